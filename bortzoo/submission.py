"""`bortzoo.submission.SubmissionWriter`: the class_path every fine-tune recipe and published `recipe.yaml` names.

The callback lives with the leaderboard files it writes, in `bortzoo.tasks.leaderboard`; this module only keeps
that class_path working.
"""

from bortzoo.tasks.leaderboard import SubmissionWriter

__all__ = ["SubmissionWriter"]
