"""Example requests, shown in /docs and sent by `make verify` after a deploy.

Plain data with no imports, so the deploy check can load it with nothing
but Python's standard library.
"""

{% if cookiecutter.country == "us" -%}
EXAMPLE_HOUSEHOLD = {
    "people": {
        "parent": {"age": {"2025": 35}, "employment_income": {"2025": 40000}},
        "child": {"age": {"2025": 6}},
    },
    "tax_units": {
        "tax_unit": {
            "members": ["parent", "child"],
            "income_tax": {"2025": None},
            "ctc": {"2025": None},
            "eitc": {"2025": None},
        }
    },
    "families": {"family": {"members": ["parent", "child"]}},
    "spm_units": {"spm_unit": {"members": ["parent", "child"], "snap": {"2025": None}}},
    "marital_units": {
        "parent_marital_unit": {"members": ["parent"]},
        "child_marital_unit": {"members": ["child"]},
    },
    "households": {
        "household": {
            "members": ["parent", "child"],
            "state_name": {"2025": "CA"},
            "household_net_income": {"2025": None},
        }
    },
}
EXAMPLE_POLICY = {
    "gov.irs.credits.ctc.amount.base[0].amount": {"2025-01-01.2100-12-31": 3000}
}
# For GET /parameters/{name} and GET /variables/{name}.
EXAMPLE_PARAMETER = "gov.irs.credits.ctc.amount.base[0].amount"
EXAMPLE_PARAMETER_GROUP = "gov.irs.credits.ctc.amount"
EXAMPLE_VARIABLE = "ctc"
{%- else -%}
EXAMPLE_HOUSEHOLD = {
    "people": {
        "parent": {"age": {"2025": 35}, "employment_income": {"2025": 30000}},
        "child": {"age": {"2025": 6}},
    },
    "benunits": {
        "benunit": {
            "members": ["parent", "child"],
            "child_benefit": {"2025": None},
            "universal_credit": {"2025": None},
        }
    },
    "households": {
        "household": {
            "members": ["parent", "child"],
            "household_net_income": {"2025": None},
        }
    },
}
EXAMPLE_POLICY = {
    "gov.hmrc.income_tax.rates.uk[0].rate": {"2025-01-01.2100-12-31": 0.22}
}
# For GET /parameters/{name} and GET /variables/{name}.
EXAMPLE_PARAMETER = "gov.hmrc.income_tax.rates.uk[0].rate"
EXAMPLE_PARAMETER_GROUP = "gov.hmrc.income_tax.rates"
EXAMPLE_VARIABLE = "universal_credit"
{%- endif %}
