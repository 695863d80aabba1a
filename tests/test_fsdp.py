"""FSDP with a frozen teacher (bortzoo.modules.fsdp) at tiny sizes, on CPU: torch's FSDP runs on gloo with
device_id=cpu, so the wrap plan, two distributed training steps and a 2-process Lightning fit are real here.

What CPU cannot show: NCCL, bf16 mixed precision, and Lightning's full-state-dict checkpoint *save* (torch's
FSDP segfaults on offload_to_cpu when the module is already on CPU); the resume path (load) is tested.
"""

from __future__ import annotations

import math
import os
import shutil
import socket

import pytest
import torch
import torch.distributed as dist

from bortzoo.arch import get_arch
from bortzoo.errors import BortzooError

TINY = {"depth": 1, "heads": 2, "hidden": 64, "intermediate": 128, "vocab_size": 512, "max_positions": 64}
TEACHER_DEPTH = 2


@pytest.fixture(scope="module")
def bert_teacher(tmp_path_factory) -> str:
    from bortzoo.export import write_random_masked_lm

    return str(write_random_masked_lm(tmp_path_factory.mktemp("t"), get_arch({**TINY, "depth": TEACHER_DEPTH})))


@pytest.fixture(scope="module")
def roberta_teacher(tmp_path_factory) -> str:
    """RoBERTa's layout (``roberta.`` prefix, ``lm_head``, RobertaLayer), as Bort's real teacher."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR

    folder = tmp_path_factory.mktemp("roberta")
    config = RobertaConfig(vocab_size=512, hidden_size=64, num_hidden_layers=TEACHER_DEPTH, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1)
    torch.manual_seed(0)
    RobertaForMaskedLM(config).save_pretrained(folder)
    shutil.copytree(TINY_TOKENIZER_DIR, folder, dirs_exist_ok=True)
    return str(folder)


def student_with(teacher_dir: str, seed: int = 0):
    from bortzoo.modules import Student, Teacher

    torch.manual_seed(seed)
    return Student(TINY, teacher=Teacher(teacher_dir))


def wrap(student, policy, ignored):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return FSDP(student, auto_wrap_policy=policy, ignored_states=ignored or None, device_id=torch.device("cpu"),
                use_orig_params=True)


def masked_batch(rank: int, step: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 * rank + step)
    ids = torch.randint(5, 500, (2, 16), generator=generator)
    labels = torch.full_like(ids, -100)
    labels[:, 3], labels[:, 9] = ids[:, 3], ids[:, 9]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def clean(name: str) -> str:
    return name.replace("_fsdp_wrapped_module.", "")


@pytest.fixture
def one_process_group():
    """FSDP needs a process group; world size 1 in this process, destroyed after so no other test sees it."""
    assert not dist.is_initialized(), "another test left a process group initialised in this process"
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


# -- (a) the wrap plan on the real module tree ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("mode", ["shard", "replicate"])
def test_every_unit_is_uniform_and_no_trainable_unit_holds_the_teacher(kind, mode, request, one_process_group):
    from bortzoo.modules.fsdp import check_uniform_units, wrap_plan

    student = student_with(request.getfixturevalue(f"{kind}_teacher"))
    teacher_ids = {id(p) for p in student.teacher.parameters()}
    student_numel = sum(p.numel() for p in student.model.parameters())
    policy, ignored = wrap_plan(student, mode)
    units = check_uniform_units(wrap(student, policy, ignored))

    trainable = [u for u in units if u["requires_grad"] == {True}]
    frozen = [u for u in units if u["requires_grad"] == {False}]
    assert [u["name"] for u in trainable] == ["<root>", "_fsdp_wrapped_module.model.bert.encoder.layer.0"]
    assert not any(id(p) in teacher_ids for u in trainable for p in u["flat_param"]._params)
    assert sum(u["numel"] for u in trainable) == student_numel  # the whole student is sharded, nothing else
    layer = "_fsdp_wrapped_module.teacher.model.{}.encoder.layer.{}".format
    if mode == "shard":  # each teacher layer its own frozen unit; its embeddings and (tied) head replicated
        assert [u["name"] for u in frozen] == [layer(kind, i) for i in range(TEACHER_DEPTH)]
        assert all(id(p) in teacher_ids for u in frozen for p in u["flat_param"]._params)
        word_embeddings = student.teacher.model.get_input_embeddings().weight
        assert any(p is word_embeddings for p in ignored)
    else:  # the teacher is out of FSDP altogether
        assert frozen == [] and ignored == [student.teacher]


def test_layers_alone_would_mix_the_teacher_into_the_root_unit(bert_teacher, one_process_group):
    """The trap the plan avoids: wrap only the layers and the root unit holds student and teacher embeddings."""
    from torch.distributed.fsdp.wrap import CustomPolicy

    from bortzoo.modules.fsdp import check_uniform_units, encoder_layers

    student = student_with(bert_teacher)
    layers = {id(m) for m in encoder_layers(student)}
    with pytest.raises(BortzooError, match="<root>"):
        check_uniform_units(wrap(student, CustomPolicy(lambda m: id(m) in layers), None))


# -- the strategy from YAML -------------------------------------------------------------------------------------

def test_the_strategy_builds_from_recipe_yaml(monkeypatch):
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy
    from torch.distributed.fsdp import ShardingStrategy

    from bortzoo.modules.fsdp import DistillFSDPStrategy
    from bortzoo.recipe import lightning_cli

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(repo)
    cli = lightning_cli(["--config", "recipes/pretrain/bort.yaml"], run=False, parse_only=True)
    strategy = cli.config["trainer"]["strategy"]
    assert strategy["class_path"] == "bortzoo.modules.fsdp.DistillFSDPStrategy"
    assert strategy["init_args"]["teacher"] == "replicate"

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--strategy", type=Strategy)
    snippet = """
        class_path: bortzoo.modules.fsdp.DistillFSDPStrategy
        init_args: {teacher: shard, sharding_strategy: FULL_SHARD}
    """
    built = parser.instantiate_classes(parser.parse_object({"strategy": yaml.safe_load(snippet)})).strategy
    assert isinstance(built, DistillFSDPStrategy) and built.teacher == "shard"
    assert built.sharding_strategy == ShardingStrategy.FULL_SHARD and built.kwargs["use_orig_params"] is True
    with pytest.raises(Exception, match="teacher"):
        parser.parse_object({"strategy": yaml.safe_load(snippet.replace("shard,", "halve,"))})
    with pytest.raises(BortzooError, match="use_orig_params"):
        DistillFSDPStrategy(use_orig_params=False)


# -- (b) two processes, torch's FSDP ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, *args) -> None:
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(free_port(), *args), nprocs=2, join=True)


def _join(rank: int, port: int, lightning: bool = False) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if lightning:  # Lightning's environment then joins these processes instead of launching its own
        os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE="2")
    else:
        dist.init_process_group("gloo", rank=rank, world_size=2)


def _two_training_steps(rank: int, port: int, teacher_dir: str) -> None:
    from lightning.pytorch.strategies.strategy import _ForwardRedirection
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import CustomPolicy

    from bortzoo.modules.fsdp import check_uniform_units, encoder_layers, wrap_plan
    from bortzoo.modules.optim import param_groups

    _join(rank, port)
    step = _ForwardRedirection()  # what Lightning does: training_step through the root unit's forward
    for mode in ("shard", "replicate"):
        student = student_with(teacher_dir)
        teacher_before = {n: p.detach().clone() for n, p in student.teacher.named_parameters()}
        student_before = {n: p.detach().clone() for n, p in student.model.named_parameters()}
        wrapped = wrap(student, *wrap_plan(student, mode))
        units = check_uniform_units(wrapped)
        # Student's own optimiser groups, by parameter name: every trainable unit reaches it
        optimizer = torch.optim.AdamW(param_groups(student.model.named_parameters(), 1e-2, 0.01))
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert all(id(p) in in_optimizer for u in units if u["requires_grad"] == {True} for p in u["flat_param"]._params)
        assert {group["weight_decay"] for group in optimizer.param_groups} == {0.0, 0.01}
        for i in range(2):
            loss = step(wrapped, student, "_step", masked_batch(rank, i), "train")
            assert math.isfinite(loss.item())
            loss.backward()
            assert all(p.grad is None for p in student.teacher.parameters())
            assert all(u["flat_param"].grad is None and not u["flat_param"].requires_grad
                       for u in units if u["requires_grad"] == {False})  # no gradient memory for the teacher
            optimizer.step()
            optimizer.zero_grad()
        with FSDP.summon_full_params(wrapped):
            assert all(torch.equal(p, teacher_before[clean(n)]) for n, p in student.teacher.named_parameters())
            changed = [not torch.equal(p, student_before[clean(n)]) for n, p in student.model.named_parameters()]
            checksum = torch.stack([p.double().sum() for _, p in student.model.named_parameters()])
        assert all(changed), mode
        both = [torch.empty_like(checksum) for _ in range(2)]
        dist.all_gather(both, checksum)
        assert torch.equal(both[0], both[1]), mode  # the ranks hold the same student

    # the counter-example: the teacher as one unit is never gathered, as Student calls teacher.masked_logits
    student = student_with(teacher_dir)
    wrapped_ids = {id(m) for m in encoder_layers(student)} | {id(student.teacher)}
    wrapped = wrap(student, CustomPolicy(lambda m: id(m) in wrapped_ids), None)
    check_uniform_units(wrapped)  # uniform, and still wrong
    with pytest.raises(RuntimeError):
        step(wrapped, student, "_step", masked_batch(rank, 0), "train")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_fsdp_training_steps_on_two_processes(bert_teacher):
    spawn(_two_training_steps, bert_teacher)


# -- (c) two processes, Lightning's Trainer -----------------------------------------------------------------------

def _lightning_fit(rank: int, port: int, teacher_dir: str, checkpoint: str, export_dir: str) -> None:
    import lightning as L
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from transformers import BertForMaskedLM

    from bortzoo.export import ExportTransformers
    from bortzoo.modules.fsdp import DistillFSDPStrategy, check_uniform_units

    _join(rank, port, lightning=True)
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    for mode in ("shard", "replicate"):
        student = student_with(teacher_dir)
        teacher_before = {n: p.detach().clone() for n, p in student.teacher.named_parameters()}
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DistillFSDPStrategy(teacher=mode), max_steps=2,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, use_distributed_sampler=False,
                            callbacks=[ExportTransformers(f"{export_dir}/{mode}")])
        batches = [masked_batch(rank, i) for i in range(2)]
        trainer.fit(student, torch.utils.data.DataLoader(batches, batch_size=None))
        assert trainer.global_step == 2 and math.isfinite(trainer.callback_metrics["train/loss"].item())
        # the recipe's export at the end of fit: the gathered student, written once by rank zero
        dist.barrier()
        exported = BertForMaskedLM.from_pretrained(f"{export_dir}/{mode}")
        with FSDP.summon_full_params(trainer.strategy.model):
            trained = {clean(n): p.detach().clone() for n, p in student.model.named_parameters()}
        assert trained and all(torch.equal(p, trained[n]) for n, p in exported.named_parameters()), mode
        assert not torch.equal(trained["bert.encoder.layer.0.output.dense.weight"],
                               saved["model.bert.encoder.layer.0.output.dense.weight"])  # trained, not the checkpoint
        units = check_uniform_units(trainer.strategy.model)
        assert len([u for u in units if u["requires_grad"] == {False}]) == (TEACHER_DEPTH if mode == "shard" else 0)
        in_optimizer = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
        trainable = {id(p) for p in trainer.strategy.model.parameters() if p.requires_grad}
        assert trainable == in_optimizer == {id(p) for p in student.model.parameters()}  # the root unit's too
        # resume: a Student checkpoint holds no teacher; FSDP loads through its wrapper, the strategy excuses it
        trainer.strategy.load_checkpoint(checkpoint)
        with FSDP.summon_full_params(trainer.strategy.model):
            assert all(torch.equal(p, saved[f"model.{clean(n)}"]) for n, p in student.model.named_parameters())
            assert all(torch.equal(p, teacher_before[clean(n)]) for n, p in student.teacher.named_parameters())
    dist.destroy_process_group()


@pytest.mark.slow
def test_lightning_fit_with_the_strategy_on_two_cpu_processes(bert_teacher, tmp_path):
    from bortzoo.modules import Student

    torch.manual_seed(7)
    checkpoint = tmp_path / "student.ckpt"  # what Student.on_save_checkpoint leaves: model.* only
    torch.save({"state_dict": Student(TINY).state_dict()}, checkpoint)
    spawn(_lightning_fit, bert_teacher, str(checkpoint), str(tmp_path / "export"))
