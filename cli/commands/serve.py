"""``numbamlp serve``: the training service over HTTP, and ``serve token``: the tokens of
the people who use it, kept in the service's database.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click

from numbamlp.cli.common import CliError
from numbamlp.service import DEFAULT_BATCH_WINDOW_S
from numbamlp.service.auth import ROLES


def _limit_flags(command):
    """serve's flags for the server's limits, one per field of numbamlp.service.limits.Limits
    (its defaults and help), so the two cannot drift."""
    from dataclasses import fields

    from numbamlp.service.limits import HELP, Limits, flag

    for field in reversed(fields(Limits)):
        kind = click.IntRange(min=1) if field.type in (int, "int") else click.FloatRange(min=0, min_open=True)
        command = click.option(flag(field.name), field.name, type=kind, default=field.default, show_default=True,
                               help=HELP[field.name])(command)
    return command


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost unless told otherwise).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: a free one, printed at start).")
@click.option("--data-dir", type=click.Path(file_okay=False), default="numbamlp-service", show_default=True,
              help="Where the jobs database, uploaded data, run directories and the token live.")
@click.option("--workers", type=int, metavar="N", help="Train on a Dask LocalCluster of N worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Train on the running Dask cluster at ADDRESS.")
@click.option("--batch-window", type=float, default=DEFAULT_BATCH_WINDOW_S, show_default=True,
              help="Seconds a queued job waits for others that can share its stack (0: none).")
@_limit_flags
@click.pass_context
def serve(ctx, host, port, data_dir, workers, scheduler, batch_window, **limits):
    """Run the training service: jobs over HTTP, batched into stacks, with a dashboard at /.

    The first start writes an admin token to DATA_DIR/token; `serve token create NAME`
    makes one for each person."""
    if ctx.invoked_subcommand is not None:  # (`serve token ...`: it reads --data-dir from here too)
        return
    from numbamlp.paths import OutputPathError, check_output_directory
    from numbamlp.service.limits import Limits
    from numbamlp.sweeps import SweepError

    if workers is not None and scheduler is not None:
        raise CliError("give --workers or --scheduler, not both")
    if batch_window < 0:
        raise CliError("--batch-window must be 0 or more")
    try:
        check_output_directory(data_dir, "the data directory")
        from numbamlp.service import serve as run_server

        run_server(data_dir, host=host, port=port, batch_window=batch_window, limits=Limits(**limits),
                   workers=workers, scheduler=scheduler, announce=lambda line: click.echo(line, err=False))
    except (OutputPathError, SweepError) as err:
        raise CliError(str(err)) from None
    except RuntimeError as err:  # the serve extra is missing, the address cannot be had, a bad token file or database
        raise CliError(str(err)) from None


@serve.group("token")
def serve_token():
    """Tokens for the people who use the service: create, list, revoke.  Works while the
    server runs (a revoked token is refused from its next request on)."""


def _token_store(command):
    """A token command's --data-dir, given to it as the service's open Store (closed after)."""

    @click.option("--data-dir", type=click.Path(file_okay=False),
                  help="The service's data directory (default: serve's --data-dir).")
    @click.pass_context
    @functools.wraps(command)
    def with_store(ctx, data_dir, **arguments):
        from numbamlp.service.store import Store, StoreError

        directory = Path(data_dir or ctx.parent.parent.params["data_dir"])  # (serve's, given before `token`)
        database = directory / "numbamlp.sqlite"
        if not database.is_file():
            raise CliError(f"{directory} holds no service database: start `numbamlp serve --data-dir {directory}` "
                           "once")
        os.umask(0o077)  # (as serve: the database's files stay the service's own)
        try:
            store = Store(database)
        except StoreError as err:
            raise CliError(str(err)) from None
        try:
            return command(store, **arguments)
        finally:
            store.close()

    return with_store


@serve_token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="submit", show_default=True,
              help="read: list, follow, download, predict; submit: also submit and cancel its own jobs; "
                   "admin: also cancel anyone's.")
@_token_store
def serve_token_create(store, name, role):
    """Make a token for NAME (printed once: the service keeps only its hash)."""
    from numbamlp.service.auth import FILE_TOKEN_NAME, check_name, new_token

    try:
        check_name(name)
    except ValueError as err:
        raise CliError(str(err)) from None
    if name == FILE_TOKEN_NAME:
        raise CliError(f"{FILE_TOKEN_NAME!r} is the token file's token: choose another name")
    token = new_token()
    if not store.add_token(name, role, token):
        raise CliError(f"{name} has a token already: `numbamlp serve token revoke {name}` first to replace it")
    click.echo(token)


@serve_token.command("list")
@_token_store
def serve_token_list(store):
    """Every token's name, role and when it was made (never the tokens)."""
    import datetime

    for token in store.tokens():
        made = datetime.datetime.fromtimestamp(token["created_at"]).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{token['name']:<24}  {token['role']:<6}  {made}")


@serve_token.command("revoke")
@click.argument("name")
@_token_store
def serve_token_revoke(store, name):
    """Refuse NAME's token from now on (its jobs stay)."""
    from numbamlp.service.auth import FILE_TOKEN_NAME, TOKEN_FILE

    if name == FILE_TOKEN_NAME:
        raise CliError(f"{FILE_TOKEN_NAME!r} is the token file's token: to replace it, delete "
                       f"DATA_DIR/{TOKEN_FILE} and restart the server")
    if not store.revoke_token(name):
        raise CliError(f"no token named {name[:70]!r} (`numbamlp serve token list` shows them)")
    click.echo(f"revoked {name}")
