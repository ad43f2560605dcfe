"""The one exception type for mistakes a user can make; the CLI prints it as a single line."""


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


class CheckpointMismatch(UserError):
    """A checkpoint saved with other optimizer settings: resuming it would silently train with the old ones."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite (a learning rate too high): a search records the trial and goes on."""
