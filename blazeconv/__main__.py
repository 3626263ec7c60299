"""``python -m blazeconv`` and the ``blazeconv`` command (``[project.scripts]``).

SIGINT and SIGTERM are handled from here on, before the CLI and its imports (numpy, click) load: an interrupt
at start-up is one ``Error: interrupted ...`` line and exit 130 / 143 like any other (``blazeconv.interrupts``),
and so is one that arrives while the interpreter shuts down after the command.
"""

import sys


def main() -> None:
    from .interrupts import Interrupted, guard_imports, handle_signals

    with handle_signals(final=True), guard_imports():
        try:
            from .cli import main as run_cli

            run_cli()  # exits; its own handler reports an interrupt of the command
        except Interrupted as exc:  # while the CLI was imported, or as it exits
            sys.stderr.write(f"Error: {exc}\n")
            sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
