"""The typer application and the one place that turns errors into messages (never tracebacks)."""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer
from rich.console import Console

from lambdaforge.cli.errors import CommandFailedError
from lambdaforge.errors import LambdaforgeError

app = typer.Typer(
    name="lambdaforge",
    help="Train a PyTorch model, ship it as INT8 ONNX behind a Lambda HTTP API, keep it fresh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Options shared by the commands that operate a stack, local or deployed.
LocalOpt = Annotated[bool, typer.Option("--local", help="the running local cloud (`lambdaforge up`)")]
StackOpt = Annotated[str | None, typer.Option("--stack", help="CloudFormation stack name (default lambdaforge)")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region")]
RecipeOpt = Annotated[str | None, typer.Option(help="recipe (default: the one the stack serves)")]


def main() -> None:
    """Entry point of the `lambdaforge` console script."""
    try:
        result = app(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CommandFailedError as exc:
        err_console.print(f"[red]failed:[/red] {exc}")
        sys.exit(exc.exit_code)
    except LambdaforgeError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"[red]error:[/red] {where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
