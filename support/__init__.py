"""What tests/ and bench/ share, so that neither imports the other.

- ``servers``: processes in sessions of their own (a model server, any subprocess),
  ports, and stopping everything they started;
- ``projects``: small demo projects, their fast training settings, their champions
  and Bentos;
- ``corpus``: the bad-data corpus;
- ``clients``: what a client sends a model server: a real record, generated requests;
- ``online_store``: the Redis online store's config, and materialization killed
  part-way;
- ``containers``: the container tests' skip-or-fail rule.
"""
