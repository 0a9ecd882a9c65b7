"""Society-wide impacts: what a policy does to a whole weighted population.

A microsimulation of a survey dataset, split into chunks of whole households
so the work spreads over processes (locally) or containers (on Modal), and
reduced to policyengine-api's economy comparison. docs/population.md states
every figure's definition.

- ``dataset``: read a dataset file with the country's own class, check its
  digest and layout; filter a region; split into chunks; allowed years.
- ``datasets``: the configured datasets by name (synthetic, the default).
- ``synthetic``: write a deterministic synthetic dataset in the real layout.
- ``metrics``: what a job computes, as a map and a reduce, by name.
- ``economy``: /jobs/impact's metric: the map (arrays from one chunk) and
  the reduce (the figures).
- ``coupled``: the few model variables that read the whole population.
- ``chunks``: simulate one chunk, gather chunks, a local process pool.
- ``sizing``: how many chunks, from the processes and a chunk's memory.
- ``impact``: a population job, run here or fanned out; what it keeps.
- ``request``: the jobs' requests; ``progress``: how far a job is.
- ``fetch``: copy the country's default dataset to a folder (the Volume).
"""
