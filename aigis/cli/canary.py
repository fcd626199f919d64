"""``aigis model canary VERSION --percent P | status | promote | abort``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import typer

from aigis.cli.common import emit, fail, settings

if TYPE_CHECKING:
    from aigis.promote import ServiceControl
    from training.registry import Registry

Service = Callable[..., AbstractContextManager[tuple["Registry", "ServiceControl"]]]

ACTIONS = ("status", "promote", "abort")

HELP = """Route a slice of the cache misses to a candidate version served beside the default.

`aigis model canary VERSION --percent P` starts it (again: changes the share);
`status` compares both versions on the slice (agreement, p_ai shift, review rates);
`promote` puts the candidate in service; `abort` ends it and unregisters the candidate
(`--keep` leaves it registered in TorchServe).
"""


def add(model_app: typer.Typer, service: Service) -> None:
    """Add the ``canary`` command to ``aigis model``; ``service`` opens the registry and the
    service control as the other model commands do."""

    @model_app.command("canary", help=HELP)
    def canary(
        target: str = typer.Argument(..., help="A version to start, or status, promote, abort."),
        percent: float | None = typer.Option(
            None, "--percent", "-p", help="Share of cache misses the candidate answers (0-100]."
        ),
        keep: bool = typer.Option(
            False, "--keep", help="abort: leave the candidate registered in TorchServe."
        ),
        as_json: bool = typer.Option(False, "--json", help="status: print JSON."),
    ) -> None:
        from aigis.canary import CanaryControl

        if target not in ACTIONS and percent is None:
            fail(f"aigis model canary {target}: give --percent, e.g. --percent 5")
        if target in ACTIONS and percent is not None:
            fail(f"aigis model canary {target}: --percent starts a canary; give a VERSION")
        with service(f"canary {target}", lock=target != "status") as (_registry, control):
            canaries = CanaryControl(settings(), control)
            if target == "status":
                emit(canaries.status(), as_json, _print_status)
            elif target == "promote":
                event = canaries.promote()
                typer.echo(f"version {event.version} in service (was {event.previous})")
            elif target == "abort":
                ended = canaries.abort(keep=keep)
                if ended is None:
                    typer.echo("the canary's state could not be read; it was removed")
                else:
                    kept = "kept registered" if keep else "unregistered"
                    typer.echo(f"canary of version {ended.version} ended; {kept}")
            else:
                assert percent is not None
                state = canaries.start(target, percent)
                typer.echo(
                    f"version {state.version} answers {state.percent:g}% of cache misses "
                    f"beside {state.default}; `aigis model canary status` compares them"
                )


def _print_status(status: dict[str, Any]) -> None:
    typer.echo(
        f"canary: version {status['candidate']} at {status['percent']:g}% since "
        f"{status['started_at']}, compared with {status['compared_with']} "
        f"(default now {status['default']}; candidate "
        f"{'served' if status['candidate_served'] else 'NOT served'} by TorchServe)"
    )
    if not status["items"]:
        typer.echo("no slice item scored by both versions yet")
        return
    typer.echo(f"items scored by both: {status['items']}")
    typer.echo(f"decisions agree:      {status['agreement']:.1%}")
    typer.echo(
        f"mean p_ai:            {status['p_ai_default']:.4f} -> {status['p_ai_candidate']:.4f} "
        f"(shift {status['p_ai_shift']:+.4f}, mean |shift| {status['mean_abs_shift']:.4f})"
    )
    typer.echo(
        f"review rate:          {status['review_rate_default']:.1%} -> "
        f"{status['review_rate_candidate']:.1%}"
    )
