"""The batch core (``_model/batch/``) on its own: merging households under
ids that cannot collide, the groups core would add, the checks that keep an
error with its household, input signatures, and the audit of formulas that
read the whole Simulation (``COUPLINGS``).

Moved with the core from its first home; answers against direct
Simulations are checked through the API in ``test_calculate_many.py``.
"""

import copy
import importlib
import inspect
import re
import types

import pytest

from policyengine_backend._model import batch
from policyengine_backend._model.batch.merge import input_signature, person_id
from policyengine_backend._settings import COUNTRY

YEAR = "2026"


@pytest.fixture(scope="module")
def country() -> str:
    return COUNTRY


def varied_households() -> dict:
    """Households reusing the same names, with and without the optional
    groups, of several sizes."""
    found = {}
    for i, (adults, children) in enumerate(
        [(1, 0), (2, 1), (1, 2), (2, 3), (1, 1), (3, 0)]
    ):
        names = ["you", "your partner", "hh0:p1."][:adults] + ["kid", "hh1:p0.", "k.2"][
            :children
        ]
        household = {
            "people": {
                name: person(30 + j if j < adults else 4 + j, 10_000 * (i + j))
                for j, name in enumerate(names)
            },
            "households": {"your household": {"members": list(names)}},
        }
        if i % 2:
            model = batch.country_model(COUNTRY)
            group = model.groups[0]
            if group.plural != "households":
                household[group.plural] = {"first": {"members": names[:1]}}
        found[f"household {i}"] = household
    return found


def person(age: int = 40, income: int = 0) -> dict:
    return {"age": {YEAR: age}, "employment_income": {YEAR: income}}


def group_plurals(country: str) -> list[str]:
    return [group.plural for group in batch.country_model(country).groups]


def test_ids_never_collide_whatever_the_names(country):
    # Every household uses the same names, and some names are the ids
    # themselves or contain their markers.
    names = ["you", "hh0:p0.", "hh0:p1.", "hh1:p0.", ":p", "hh", ".", "hh0:g0."]
    one = {
        "people": {name: person() for name in names},
        "households": {
            "hh0:g0.": {"members": names[:4]},
            "hh1:g0.": {"members": names[4:]},
        },
    }
    situations = {
        key: copy.deepcopy(one) for key in ["hh0:p0.", "hh0:g0.", "", "a.b:c"]
    }
    merged = batch.merge(situations, country)
    people = merged.situation["people"]
    assert len(people) == len(names) * len(situations)  # nothing overwritten
    for plural in ["people", *group_plurals(country)]:
        seen = set()
        for key in situations:
            ids = list(merged.situation[plural])[merged.rows(key, plural)]
            assert set(ids).isdisjoint(seen)
            seen.update(ids)
            # Every id leads back to its own household and name, in order.
            back = [merged.owner(plural, i) for i in ids]
            assert back == [(key, name) for name in merged.names[key][plural]]
    assert merged.names["a.b:c"]["people"] == tuple(names)


def test_id_scheme_is_injective():
    ids = {person_id(i, j) for i in range(120) for j in range(120)}
    assert len(ids) == 120 * 120
    # Axes append a copy number to every id: still no two equal.
    suffixed = {i + str(n) for i in ids for n in (0, 1, 10, 11)}
    assert len(suffixed) == 4 * len(ids)


def test_groups_core_adds_are_per_household(country):
    """Left-out entities and unplaced people get what core gives them,
    never a group shared with another household."""
    model = batch.country_model(country)
    listed = {
        "people": {"you": person(), "kid": person(5), "lodger": person(30)},
        "households": {"home": {"members": ["you", "kid", "lodger"]}},
    }
    first_group = next(g for g in model.groups if g.plural != "households")
    first = first_group.plural
    partial = copy.deepcopy(listed)
    partial[first] = {"main": {"members": ["you"]}}  # kid and lodger unplaced
    merged = batch.merge({"a": listed, "b": partial, "c": listed}, country)
    for group in model.groups:
        members = {
            gid: g.get(group.default_role, [])
            for gid, g in merged.situation[group.plural].items()
        }
        owners = {}
        for gid, people in members.items():
            for pid in people:
                assert pid not in owners  # in one group only
                owners[pid] = gid
        assert len(owners) == 9  # everyone placed explicitly
        for pid, gid in owners.items():
            assert pid.split(":")[0] == gid.split(":")[0]  # same household
    assert merged.names["a"][first] == (first_group.key,)
    assert merged.names["b"][first] == ("main", "kid", "lodger")


@pytest.mark.ci  # seven direct Simulations: minutes on a loaded machine
def test_groups_match_core_for_each_household(country, country_package):
    """Memberships and roles in the merged Simulation equal each household's
    own Simulation's, group by group (core numbers the groups it adds for
    unplaced people in a different order from run to run, so by name)."""

    def simulate(situation):
        return country_package.Simulation(situation=situation)

    model = batch.country_model(country)
    some = varied_households()
    quirk = copy.deepcopy(next(iter(some.values())))
    # A person named like a listed group they are not in: core puts them
    # in that group and leaves the group it made for them empty.
    first_person = next(iter(quirk["people"]))
    quirk["people"]["your household2"] = person(30)
    quirk["households"]["your household"]["members"].append("your household2")
    group = model.groups[-1]
    quirk[group.plural] = {"your household2": {"members": [first_person]}}
    some["quirk"] = quirk
    merged = batch.merge(some, country)
    together = simulate(merged.situation)
    for key, household in some.items():
        alone = simulate(household)
        for group in model.groups:
            mine = together.get_population(group.plural)
            rows = merged.rows(key, group.plural)
            people = merged.rows(key, "people")
            names = merged.names[key][group.plural]
            got = [
                (
                    names[i - rows.start] if rows.start <= i < rows.stop else None,
                    str(role),
                )
                for i, role in zip(
                    mine.members_entity_id[people],
                    mine.members_role[people],
                    strict=False,
                )
            ]
            theirs = alone.get_population(group.plural)
            want = [
                (str(theirs.ids[i]), str(role))
                for i, role in zip(
                    theirs.members_entity_id, theirs.members_role, strict=True
                )
            ]
            assert got == want, (key, group.plural)
            assert sorted(names) == sorted(str(i) for i in theirs.ids), (
                key,
                group.plural,
            )


def test_checks_name_the_household_and_field(country):
    good = {"people": {"you": person()}, "households": {"home": {"members": ["you"]}}}
    bad_member = copy.deepcopy(good)
    bad_member["households"]["home"]["members"] = ["you", "ghost"]
    twice = copy.deepcopy(good)
    twice["households"]["other"] = {"members": ["you"]}
    unknown = copy.deepcopy(good)
    unknown["tax_unitz"] = {}
    nobody = {"people": {}, "households": {}}
    with pytest.raises(batch.BatchError) as caught:
        batch.merge(
            {
                "ok": good,
                "m": bad_member,
                "t": twice,
                "u": unknown,
                "n": nobody,
                "x": 3,
            },
            country,
        )
    problems = caught.value.problems
    assert set(problems) == {"m", "t", "u", "n", "x"}
    assert problems["m"].path == ("households", "m", "households", "home", "members")
    assert problems["t"].path == ("households", "t", "households", "other", "members")
    assert problems["u"].path == ("households", "u", "tax_unitz")
    assert problems["n"].path == ("households", "n", "people")
    assert problems["x"].path == ("households", "x")


def test_axes_only_in_a_batch_of_one(country):
    axes = [
        [
            {
                "name": "employment_income",
                "count": 3,
                "min": 0,
                "max": 1000,
                "period": YEAR,
            }
        ]
    ]
    one = {"people": {"you": person()}, "households": {"home": {"members": ["you"]}}}
    with_axes = dict(copy.deepcopy(one), axes=axes)
    assert batch.merge({"a": with_axes}, country).situation["axes"] == axes
    with pytest.raises(batch.BatchError) as caught:
        batch.merge({"a": one, "b": with_axes, "c": one}, country)
    assert list(caught.value.problems) == ["b"]
    assert caught.value.problems["b"].path == ("households", "b", "axes")
    # Empty axes mean none, as in core.
    assert (
        "axes"
        not in batch.merge({"a": one, "b": dict(one, axes=[])}, country).situation
    )


def test_input_signatures(country):
    model = batch.country_model(country)
    base = {"people": {"you": person()}, "households": {"home": {"members": ["you"]}}}

    def signature(household):
        return input_signature(household, model)

    same_other_values = copy.deepcopy(base)
    same_other_values["people"]["you"]["age"][YEAR] = 70
    asks_more = copy.deepcopy(base)
    asks_more["people"]["you"]["net_income_request"] = {
        YEAR: None
    }  # nulls are not inputs
    other_year = copy.deepcopy(base)
    other_year["people"]["you"]["age"] = {"2025": 40}
    two_spellings = copy.deepcopy(base)
    two_spellings["people"]["me"] = {"age": {f"year:{YEAR}": 3}}
    ids = copy.deepcopy(base)
    ids["people"]["you"]["person_id"] = {YEAR: 1}
    assert signature(same_other_values) == signature(base)
    assert signature(asks_more) == signature(base)
    assert signature(other_year)[0] != signature(base)[0]
    assert signature(base)[1] is False
    assert signature(two_spellings)[1] is True  # core would mix them up
    assert signature(ids)[1] is True  # ids are matched across the Simulation


def test_singular_shortcut_reads_as_core_reads_it(country):
    model = batch.country_model(country)
    shortcut = {"people": {"you": person()}, "household": {"members": ["you"]}}
    merged = batch.merge({"a": shortcut, "b": shortcut}, country)
    assert merged.names["a"]["households"] == ("household",)
    assert len(merged.situation["households"]) == 2
    assert model.person_plural == "people"


def test_member_order_is_kept(country):
    names = ["zed", "amy", "mo", "bea"]
    one = {
        "people": {name: person(20 + i) for i, name in enumerate(names)},
        "households": {"home": {"members": list(reversed(names))}},
    }
    merged = batch.merge({"x": one, "y": one}, country)
    assert merged.names["y"]["people"] == tuple(names)
    ids = list(merged.situation["people"])[merged.rows("y", "people")]
    ages = [merged.situation["people"][i]["age"][YEAR] for i in ids]
    assert ages == [20, 21, 22, 23]
    assert merged.rows("y", "people") == slice(4, 8)


# --- Couplings ------------------------------------------------------------

REDUCTION = re.compile(
    r"\.sum\(\s*\)|np\.sum\(|numpy\.sum\(|\.mean\(|np\.mean|\.median\(|np\.median"
    r"|decile_rank|percentile_rank|MicroSeries|groupby|sum_by_state|\.max\(\s*\)"
    r"|\.min\(\s*\)|np\.max\(|np\.min\(|quantile|argsort|np\.sort|cumsum|np\.unique"
    # Comparing an entity's size in the Simulation with a number.
    r"|\.count\s*(==|!=|<=|>=|<|>)|(==|!=|<=|>=|<|>)\s*[\w.]+\.count\b"
)

LOOP = "np.max of member positions only bounds a loop over positions in each group"
IDS = (
    "np.unique over positive client-given ids (parent, tax unit, claiming tax "
    "unit); default ids are 0 and ignored, and a household giving ids runs alone"
)
REVIEWED = {
    "us": {
        "medicaid_slcsp_state_denominator": "sums by state only when is_over_dataset",
        "ssi_resources_deemed_from_ineligible_parent": "in COUPLINGS via the SSI "
        "spouse test; its own np.unique pools are keyed within households",
        "tax_unit_roles_supplied": "refuses inputs given for some tax units only; "
        "households sharing a Simulation give the same inputs",
        "ss_aime": "sorts each person's own years (axis=1); a year in which nobody "
        "in the Simulation was of working age adds a zero column or none, and the "
        "padding to the years counted makes those equal",
        **dict.fromkeys(
            [
                "ca_medicaid_household_pregnancies",
                "is_parent",
                "medicaid_claimed_by_parent_in_tax_unit",
                "medicaid_household_income",
                "medicaid_household_size",
                "medicaid_tax_dependent_exception_living_with_both_parents",
                "mo_tanf_is_parent_of_dependent_child",
                "wi_cts",
                "wi_cts_buening_member",
                "wi_cts_caretaker_children",
                "wi_cts_child_eligible",
                "wi_cts_sfu_member",
                "wi_works_eligible",
            ],
            f"{LOOP}; {IDS}",
        ),
    },
    "uk": {
        "attends_private_school": "ranks only when built from data; 0 in situations",
        "capital_gains_tax": "np.max over each person's options (axis=0)",
        "uc_deduction_combination": "sums parameter shares, not people",
        "uc_latent_deduction_rate": "sums parameter shares, not people",
        "uses_property_allowance": "the largest household bounds the rounds; each "
        "household's own choice settles in its own rounds",
        "is_cared_for_by_carer_benefit_recipient": "np.max bounds a loop over "
        "benefit-unit ranks within households",
        "months_since_last_birthday": "stratified draws only when built from data; "
        "0.5 in situations",
        "relative_capital_gains_mtr_change": "compares its baseline's person count "
        "with its own (the same Simulation's two branches)",
        "relative_capital_gains_retention_rate_change": "as "
        "relative_capital_gains_mtr_change",
        **dict.fromkeys(
            [
                "BRMA_LHA_rate",
                "housing_benefit_LHA_rate",
                "uc_LHA_cap",
                "uncapped_BRMA_LHA_rate",
            ],
            "np.unique over the base years present only picks the loop's values; "
            "each row takes its own year's",
        ),
    },
}


def _source(function, package: str, seen: set | None = None) -> str:
    """The function's code and that of the country's helpers it calls,
    however deep (country files are loaded under made-up module names, so
    helpers are recognised by the file they are in)."""
    seen = set() if seen is None else seen
    if function in seen:
        return ""
    seen.add(function)
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        return ""
    for name in function.__code__.co_names:
        helper = function.__globals__.get(name)
        if isinstance(helper, types.FunctionType) and f"/{package}/" in (
            helper.__code__.co_filename
        ):
            text += _source(helper, package, seen)
    return text


def test_every_population_wide_formula_is_known(country):
    system = importlib.import_module(f"policyengine_{country}.system").system
    flagged = {
        name
        for name, variable in system.variables.items()
        for formula in variable.formulas.values()
        if REDUCTION.search(_source(formula, f"policyengine_{country}"))
    }
    coupled = {c.variable for c in batch.COUPLINGS[country]}
    unknown = flagged - coupled - set(REVIEWED[country])
    assert not unknown, (
        f"read these formulas and add them to COUPLINGS or REVIEWED: {sorted(unknown)}"
    )
    print(
        f"\n{country}: {len(flagged)} formulas reduce over the population: {sorted(flagged)}"
    )


def test_couplings_name_real_variables_and_parameters(country):
    system = importlib.import_module(f"policyengine_{country}.system").system
    for coupling in batch.COUPLINGS[country]:
        assert coupling.variable in system.variables, coupling.variable
        for name in coupling.inert_if_zero + (
            (coupling.pooled_by,) if coupling.pooled_by else ()
        ):
            assert name in system.variables, name
        for path, _ in coupling.inert_parameters:
            system.parameters.get_child(path)
