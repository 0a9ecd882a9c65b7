"""Memory of the backend over long sequences of distinct requests.

What a container holds is the server process and its calculation worker
together; their proportional set sizes add up to it. A sampler reads that
ten times a second while each sequence runs, and the table gives the peak
and what is left at the end, against the container's MEMORY_MB. Part of
`make bench` (bench/bench.py calls ``measure``).
"""

import copy
import os
import threading
import time

from policyengine_backend._model.household import entity_groups, requested_values
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

STRUCTURAL_POLICIES = int(os.environ.get("BENCH_STRUCTURAL_POLICIES", "30"))
PARAMETRIC_POLICIES = int(os.environ.get("BENCH_PARAMETRIC_POLICIES", "100"))
{% if cookiecutter.country == "us" %}

STRUCTURAL_KIND = "structural"


def structural_policy(i: int) -> dict:
    """A distinct policy that switches on a structural reform."""
    return {
        "gov.contrib.ctc.oldest_child_supplement.in_effect": {
            "2024-01-01.2100-12-31": True
        },
        "gov.contrib.ctc.oldest_child_supplement.amount": {
            "2024-01-01.2100-12-31": 500 + 10 * i
        },
    }
{%- else %}

STRUCTURAL_KIND = "two-parameter"


def structural_policy(i: int) -> dict:
    """A distinct policy on two parameters at once (policyengine-uk has no
    structural switches of the kind policyengine-us has)."""
    return {
        "gov.hmrc.income_tax.allowances.personal_allowance.amount": {
            "2025-01-01.2100-12-31": 10_000 + 10 * i
        },
        "gov.hmrc.income_tax.rates.uk[1].rate": {"2025-01-01.2100-12-31": 0.41},
    }
{%- endif %}


def parametric_policy(i: int) -> dict:
    """A distinct policy on the example's parameter."""
    ((name, periods),) = EXAMPLE_POLICY.items()
    ((period, value),) = periods.items()
    return {name: {period: value * (1 + (i + 1) / 1000)}}


def household_with(earnings: float) -> dict:
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    first = next(iter(household["people"].values()))
    first["employment_income"] = {"2025": earnings}
    return household


def many_years(settings) -> dict:
    """The example household asked for every value in MAX_PERIODS years."""
    household = household_with(45_000)
    years = [str(2025 + i) for i in range(settings.max_periods)]
    for _, members in entity_groups(household):
        for variables in members.values():
            for name, periods in variables.items():
                if name != "members":
                    value = next(iter(periods.values()))
                    variables[name] = {year: value for year in years}
    return household


def largest_sweep(settings) -> dict:
    """MAX_PEOPLE people, with as many axis points as MAX_VALUES allows."""
    household = household_with(46_000)
    people = household["people"]
    template = next(iter(people.values()))
    extra = [f"extra_{i}" for i in range(settings.max_people - len(people))]
    for person in extra:
        people[person] = copy.deepcopy(template)
    for name, groups in entity_groups(household):
        if name == "people":
            continue
        if len(groups) == 1:  # one group holds everyone
            next(iter(groups.values()))["members"] = list(people)
        else:  # one group each (marital units hold at most a couple)
            groups.update(
                {f"{person}_group": {"members": [person]} for person in extra}
            )
    asked = sum(1 for _ in requested_values(household))
    points = min(settings.max_axis_points, settings.max_values // (asked * len(people)))
    household["axes"] = [
        [
            {
                "name": "employment_income",
                "count": points,
                "min": 0,
                "max": 200_000,
                "period": "2025",
            }
        ]
    ]
    return household


class Sampler:
    """Peak of the container's memory while a sequence runs."""

    def __init__(self, worker):
        self.worker = worker
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.worker.memory_mb() or 0)
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(post, engine) -> list[tuple[str, float, float, int]]:
    """(sequence, peak MB, final MB, answers that were not 200) per sequence."""
    sequences = [
        (
            f"{STRUCTURAL_POLICIES} distinct {STRUCTURAL_KIND} policies",
            [
                (household_with(47_000 + i), structural_policy(i))
                for i in range(STRUCTURAL_POLICIES)
            ],
        ),
        (
            f"{PARAMETRIC_POLICIES} distinct parametric policies",
            [
                (household_with(48_000 + i), parametric_policy(i))
                for i in range(PARAMETRIC_POLICIES)
            ],
        ),
        (
            "largest requests the limits allow",
            [
                (many_years(engine.settings), None),
                (largest_sweep(engine.settings), None),
            ],
        ),
    ]
    rows = []
    for name, requests in sequences:
        with Sampler(engine.worker) as sampler:
            failed = sum(
                post(household, policy) != 200 for household, policy in requests
            )
        final = engine.worker.memory_mb() or 0
        rows.append((name, sampler.peak, final, failed))
    return rows
