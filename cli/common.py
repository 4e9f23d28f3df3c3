"""What every command shares: the user error (one line, exit code 2), the root group that
turns every other failure into one line too, and the checks that turn a library error into
a user error (a model file, an output file), plus the compile-cache notice.

Light to import: the library loads inside the functions, so ``numbamlp --help`` stays
instant.
"""

from __future__ import annotations

import os
import sys

import click

from numbamlp.kernels import BackendUnavailable


class CliError(click.ClickException):
    """A user error: printed as one line ``Error: ...``, exit code 2."""

    exit_code = 2


# click 8.2 and later raise this (a UsageError) for a group called without a command; 8.1
# printed the help itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """click, except that a usage error is one line (with where to look), not three, and an
    unexpected exception is one line and exit 1 (the traceback only when debugging)."""

    debug = False  # --debug on this invocation: the root command's callback sets it

    def debugging(self) -> bool:
        return self.debug or os.environ.get("NUMBAMLP_DEBUG", "") not in ("", "0")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        self.debug = False
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as err:  # `numbamlp` or `numbamlp jobs` alone: the help, not an error line
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            click.echo(f"Error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BackendUnavailable as err:  # (a backend this machine cannot run, said in one line wherever found)
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)
        except Exception as err:  # a bug or an environment problem, not the user's input
            if self.debugging():
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            click.echo(f"Error: unexpected {type(err).__name__}{': ' + reason if reason else ''} "
                       "(run with --debug or NUMBAMLP_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def load_model(path: str):
    """A model file, or the model of a run directory."""
    from numbamlp.io import ModelFileError
    from numbamlp.layout import load_model as load_model_file

    try:
        return load_model_file(path)
    except ModelFileError as err:
        raise CliError(str(err)) from None


def check_output_file(path, overwrite: bool):
    """numbamlp.paths.check_output_file (a file a command may write), its refusal a CliError."""
    from numbamlp.paths import OutputPathError
    from numbamlp.paths import check_output_file as check_path

    try:
        return check_path(path, overwrite)
    except OutputPathError as err:
        raise CliError(str(err)) from None


def say_cache_notice(backend: str) -> None:
    """numbamlp.diagnostics' notice about the compile cache, on stderr, before the cpu
    backend trains (train, sweep)."""
    if backend == "cpu":
        from numbamlp.diagnostics import cache_notice

        notice = cache_notice()
        if notice:
            click.echo(notice, err=True)
