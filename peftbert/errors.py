"""The one exception type for mistakes a user can make; the CLI prints it as a single line."""


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite (a learning rate too high): a search records the trial and goes on."""
