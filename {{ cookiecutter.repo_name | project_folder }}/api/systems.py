"""Tax-benefit systems: the baseline, built once, and reformed ones, cached.

PLACEHOLDER: slow exact path until the fast path lands.
"""

import json
import threading
from collections import OrderedDict

from policyengine_core.reforms import Reform


def canonical_policy(policy: dict | None) -> str:
    return json.dumps(policy or {}, sort_keys=True, separators=(",", ":"))


class TaxBenefitSystems:
    def __init__(self, country_module, country_id: str, max_cached: int = 16):
        self.country = country_module
        self.country_id = country_id
        self.max_cached = max_cached
        self._baseline = None
        self._reformed: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def baseline(self):
        if self._baseline is None:
            self._baseline = self.country.CountryTaxBenefitSystem()
        return self._baseline

    def simulation(self, situation: dict, policy: dict | None = None):
        if not policy:
            return self.country.Simulation(
                situation=situation, tax_benefit_system=self.baseline
            )
        reform = Reform.from_dict(policy, country_id=self.country_id)
        return self.country.Simulation(situation=situation, reform=reform)
