"""`make data ENV=...`: fill ENV's Modal Volume with the country's dataset.

The Makefile runs the gate first (ENV, the Modal CLI, the workspace). This
calls the deployed app's ``fetch_population_data`` function, which downloads
the country package's pinned default dataset into the app's Volume and
checks its SHA-256 (policyengine_backend/_population/fetch.py); a file
already there with the right digest is kept. Deploy first: the function is
the deployed one, never an ephemeral app.
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True)
    parser.add_argument("--env", required=True)
    args = parser.parse_args(argv)

    import modal

    try:
        fetch = modal.Function.from_name(
            args.app, "fetch_population_data", environment_name=args.env
        )
        print(f"Fetching the dataset into {args.app}'s Volume in {args.env}...")
        print(fetch.remote())
    except modal.exception.NotFoundError:
        print(
            f"ERROR: {args.app} is not deployed in {args.env} (or predates "
            f"fetch_population_data): run `make deploy ENV={args.env}` first.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
