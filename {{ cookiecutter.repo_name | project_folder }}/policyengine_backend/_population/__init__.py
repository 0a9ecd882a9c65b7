"""Society-wide impacts: what a policy does to a whole weighted population.

A microsimulation of a survey dataset, split into chunks of whole households
so the work spreads over processes (locally) or containers (on Modal), and
reduced to policyengine-api's economy comparison. docs/population.md states
every figure's definition.

- ``dataset``: read a dataset file with the country's own class, check its
  digest and layout; filter a region; split into chunks; allowed years.
- ``datasets``: the configured datasets by name (synthetic, the default).
- ``synthetic``: write a deterministic synthetic dataset in the real layout.
- ``economy``: the map (arrays from one chunk) and the reduce (the figures).
- ``coupled``: the few model variables that read the whole population.
- ``chunks``: simulate one chunk, gather chunks, a local process pool.
- ``impact``: the ``/jobs/impact`` job, its request and its progress.
- ``fetch``: copy the country's default dataset to a folder (the Volume).
"""
