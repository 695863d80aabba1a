"""`bortzoo plan`: its arithmetic against a hand computation, its memory against the real modules at small scale."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from conftest import REPO, TINY_ARCH, make_bort_layout

from bortzoo.arch import get_arch
from bortzoo.cli import main
from bortzoo.errors import BortzooError
from bortzoo.plan import (
    GPU_PEAKS,
    Workload,
    activation_bytes,
    estimate,
    plan_agora,
    plan_search,
    read_workload,
    saved_tensor_bytes,
    trainable_params,
)


def test_bort_pretraining_arithmetic_by_hand():
    """recipes/pretrain/bort.yaml: Bort ⟨4,8,1024,768⟩ from RoBERTa-large, 32 × 8 GPUs × 512 tokens, 76 predicted
    positions per block (round(0.15 × 510)), 100,000 steps. Every product below is written out by hand."""
    work = read_workload("recipes/pretrain/bort.yaml")
    assert (work.model, work.teacher) == (get_arch("bort"), get_arch("roberta-large"))
    assert (work.seq_len, work.batch, work.world, work.accumulate, work.predictions, work.steps) == \
        (512, 32, 8, 1, 76, 100_000)
    plan = estimate(work, mfu=0.35, activations=(0, 0))
    # one Bort layer at 512 tokens: 8·L·H² + 4·L·H·I + 4·L²·H
    layer = 8 * 512 * 1024 * 1024 + 4 * 512 * 1024 * 768 + 4 * 512 * 512 * 1024
    assert layer == 6_979_321_856
    head = 2 * 76 * 1024 * 1024 + 2 * 76 * 1024 * 50_265  # the masked-LM head on the 76 predicted positions
    assert head == 7_983_030_272
    assert plan["flops_per_sequence"]["model"] == 3 * (4 * layer + head) == 107_700_953_088
    teacher_layer = 8 * 512 * 1024 * 1024 + 4 * 512 * 1024 * 4096 + 4 * 512 * 512 * 1024
    assert plan["flops_per_sequence"]["teacher"] == 24 * teacher_layer + head == 342_990_479_360
    assert plan["flops_per_step"] == 256 * (107_700_953_088 + 342_990_479_360) == 115_377_006_706_688
    assert plan["tokens_per_step"] == 256 * 512 == 131_072 and plan["tokens_total"] == 13_107_200_000
    v100_hours = 115_377_006_706_688 * 100_000 / (125e12 * 0.35) / 3600
    assert plan["gpu_hours"]["V100"] == pytest.approx(v100_hours) and round(v100_hours, 1) == 73.3
    assert plan["gpu_hours"]["H200"] == pytest.approx(v100_hours * 125 / 989)
    # the paper's 288 V100 GPU-hours, at the same MFU, in this recipe's tokens
    assert plan["paper"]["tokens"] == pytest.approx(288 * 3600 * 125e12 * 0.35 / (115_377_006_706_688 / 131_072))
    assert round(plan["paper"]["tokens"] / 1e9, 1) == 51.5
    # 16 bytes per trainable parameter (fp32 weight, gradient, two AdamW moments), sharded over the 8 GPUs by the
    # recipe's FSDP FULL_SHARD, 4 per frozen teacher parameter (teacher: replicate), and two gathered student layers
    assert (work.sharding, work.teacher_sharded) == ("FULL_SHARD", False)
    assert plan["memory_per_device"]["weights, gradients, AdamW (fp32)"] == 16 * get_arch("bort").total_params() / 8
    assert plan["memory_per_device"]["teacher weights (fp32, frozen)"] == 4 * get_arch("roberta-large").total_params()
    assert plan["memory_per_device"]["FSDP: 2 layers gathered (fp32)"] == 2 * 4 * get_arch("bort").layer_params
    ddp = estimate(dataclasses.replace(work, sharding="DDP"), activations=(0, 0))["memory_per_device"]
    assert ddp["weights, gradients, AdamW (fp32)"] == 16 * get_arch("bort").total_params()
    assert "FSDP: 2 layers gathered (fp32)" not in ddp
    shard = estimate(dataclasses.replace(work, teacher_sharded=True), activations=(0, 0))["memory_per_device"]
    teacher = get_arch("roberta-large")
    assert shard["teacher weights (fp32, frozen)"] == 4 * (teacher.total_params() - teacher.depth * teacher.layer_params
                                                           + teacher.depth * teacher.layer_params / 8)


def test_fine_tune_steps_come_from_the_task_s_training_rows():
    work = read_workload("finetune/glue/rte-bort")  # 50 epochs of RTE's 2,490 rows, batch 8, one GPU
    assert work.kind == "finetune" and work.model == get_arch("bort") and work.steps == 50 * 312  # ceil(2490 / 8)
    race = read_workload("finetune/race/race-all-bert-large")
    assert race.batch == 16 * 4 and race.seq_len == 512  # a RACE row is four sequences
    assert race.steps == 2 * -(-87_866 // 16)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_memory_matches_the_real_student_at_small_scale(tmp_path, precision):
    """A tiny distillation step of the real `Student` with its `Teacher`: the parameters the plan counts are the
    trainable ones, AdamW keeps 8 bytes for each, and the activations autograd keeps for the real training step
    (under the precision's autocast, as Lightning runs it) equal the plan's, measured on its own stand-in at
    batch 1 and 2 and scaled to the batch (equal to the byte here; 2% allowed)."""
    from bortzoo.modules import Student, Teacher

    teacher_arch = TINY_ARCH.replace(depth=3)
    student = Student(arch=TINY_ARCH, teacher=Teacher(str(make_bort_layout(tmp_path / "teacher", teacher_arch))))
    student.train()
    for layer in student.model.bert.encoder.layer:  # attention as the plan measures it (GPU flash kernels)
        layer.attention.self.dropout.p = 0.0
    batch_size, length, predictions = 8, 64, 10
    work = Workload(recipe="tiny", kind="pretrain", model=TINY_ARCH, teacher=teacher_arch, seq_len=length,
                    batch=batch_size, predictions=predictions, precision=precision)
    ids = torch.randint(5, TINY_ARCH.vocab_size, (batch_size, length))
    labels = torch.full_like(ids, -100)
    labels[:, 1:1 + predictions] = ids[:, 1:1 + predictions]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    losses = []

    def real_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            losses.append(student.training_step(batch, 0))
        return list(student.parameters())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Student.log outside a Trainer does nothing and says so
        measured = saved_tensor_bytes(real_step)
    per_sequence, per_step = activation_bytes(work)
    assert measured == pytest.approx(per_sequence * batch_size + per_step, rel=0.02)
    trainable = [p for p in student.parameters() if p.requires_grad]
    assert trainable_params(work) == sum(p.numel() for p in trainable)
    assert teacher_arch.total_params(mlm_head=True) == sum(p.numel() for p in student.teacher.parameters())
    optimizer = torch.optim.AdamW(trainable)
    losses[0].backward()
    optimizer.step()
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if t.dim() > 0)
    assert state == 8 * trainable_params(work)


def test_plan_prints_the_table_and_names_bad_input(capsys):
    main(["plan", "--config", "finetune/glue/rte-bort", "--mfu", "0.4"])
    out = capsys.readouterr().out
    assert "bortzoo plan: recipes/finetune/glue/rte-bort.yaml (finetune)" in out
    for gpu in GPU_PEAKS:
        assert f"{gpu:<5} peak" in out
    assert "MFU 40%" in out and "50 epochs of 2,490 training rows" in out and "/work/" not in out
    with pytest.raises(SystemExit):
        main(["plan", "--config", "finetune/glue/rte-bort", "--mfu", "0"])
    assert "--mfu must be within (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan", "--config", "pretrain/bort", "--mfu", "1.5"])
    assert "--mfu must be within (0, 1]" in capsys.readouterr().err
    with pytest.raises(BortzooError, match="needs the shape of"):
        read_workload("pretrain/bort-tiny")  # its teacher is another recipe's output, not written here


def test_every_gpu_recipe_is_planned():
    """Every GPU recipe plans (activations given: measuring 48 of them would take minutes); extraction and Agora
    recipes as a whole, and `read_workload` says so for them."""
    import yaml

    recipes = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if not p.stem.endswith("-tiny"))
    planned = 0
    for recipe in recipes:
        name = str(recipe.relative_to(REPO))
        if recipe.parent.name in ("extract", "agora"):
            with pytest.raises(BortzooError, match="extraction or Agora recipe is planned as a whole"):
                read_workload(name)
            whole = (plan_search if recipe.parent.name == "extract" else plan_agora)(
                yaml.safe_load(recipe.read_text()), name, activations=(1, 0))
            assert whole["flops_total"] > 0 and all(hours > 0 for hours in whole["gpu_hours"].values()), name
            planned += 1
            continue
        plan = estimate(read_workload(name), activations=(1, 0))
        assert plan["flops_per_step"] > 0 and plan["tokens_per_step"] > 0, name
        assert plan["steps"] and all(hours > 0 for hours in plan["gpu_hours"].values()), name
        planned += 1
    assert planned >= 42 + 6  # 2 pretraining, 40 fine-tune, 1 extraction and 5 Agora recipes today


def test_an_unknown_fsdp_sharding_is_named(tmp_path):
    import yaml

    recipe = yaml.safe_load((REPO / "recipes/pretrain/bort.yaml").read_text())
    recipe["trainer"]["strategy"]["init_args"]["sharding_strategy"] = "FULL_SHRAD"
    path = tmp_path / "bort.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(BortzooError, match="sharding_strategy 'FULL_SHRAD' is not one of FULL_SHARD"):
        read_workload(str(path))


def test_the_search_plan_is_its_hand_arithmetic():
    """Two candidates, both trained (ε = 0), at length 128 with 19 predicted positions: the teacher runs once over the
    cached batches; each candidate runs every θ set for the step budget (3× its forward) and the held-out batches."""
    import yaml

    config = yaml.safe_load((REPO / "recipes/extract/bort.yaml").read_text())
    config.update(space={"depths": [2], "heads": [8], "hidden": [1024], "intermediate": [768, 3072]}, epsilon=0.0,
                  min_steps=10, max_steps=100, train_batches=10, eval_batches=2)
    result = plan_search(config, "search.yaml", mfu=0.5, activations=(1000, 24))
    assert (result["candidates"], result["trained"], result["steps"], result["thetas"]) == (2, 2, 100, 2)
    assert result["predictions"] == 19 == min(round(126 * 0.15), 20)

    def layer(intermediate, seq=128, hidden=1024):  # 8·L·H² + 4·L·H·I + 4·L²·H
        return 8 * seq * hidden * hidden + 4 * seq * hidden * intermediate + 4 * seq * seq * hidden

    head = 2 * 19 * 1024 * 1024 + 2 * 19 * 1024 * 50_265
    forwards = [2 * layer(768) + head, 2 * layer(3072) + head]
    assert result["flops"]["teacher fills the cache"] == 12 * 32 * (24 * layer(4096) + head)
    assert result["flops"]["surrogate training"] == sum(2 * 100 * 32 * 3 * f for f in forwards)
    assert result["flops"]["held-out evaluation"] == sum(2 * 2 * 32 * f for f in forwards)
    assert result["gpu_hours"]["A100"] == pytest.approx(result["flops_total"] / (312e12 * 0.5) / 3600)
    largest = get_arch("2,8,1024,3072").replace(max_positions=128)  # the search sizes positions to its length
    assert sum(result["memory_per_device"].values()) == 16 * largest.total_params() + 1000 * 32 + 24
    # the teacher is freed before the candidates train: the larger of the two phases, here the teacher's
    assert result["memory_per_device_total"] == max(16 * largest.total_params() + 1000 * 32 + 24,
                                                    4 * get_arch("roberta-large").total_params())


def test_the_agora_plan_counts_its_trials():
    """16 sets sampled, half dropped per iteration (at least one): 16 + 8 + 4 + 2 + 1 = 31 trials of the Bort RTE
    recipe (50 epochs of 2,490 rows at the set's batch size), plus the BERT-large weak model fitted once."""
    import yaml

    config = yaml.safe_load((REPO / "recipes/agora/rte-bort.yaml").read_text())
    result = plan_agora(config, "agora.yaml", activations=(0, 0))
    assert (result["sets"], result["schedule"], result["trials"]) == (16, [16, 8, 4, 2, 1], 31)
    assert set(result["trial_steps"]) <= {50 * -(-2490 // 8), 50 * -(-2490 // 16)}
    weak = estimate(read_workload("finetune/glue/rte-bert-large"), activations=(0, 0))
    assert result["flops"]["weak model, fitted once"] == weak["flops_total"]
    assert result["flops_total"] == pytest.approx(result["trial_flops"] * 31 + weak["flops_total"])
    config.update(max_iterations=2)
    assert plan_agora(config, "agora.yaml", activations=(0, 0))["schedule"] == [16, 8]
