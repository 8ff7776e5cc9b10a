"""Operating the local stack from a checkout: the Prefect server and process worker behind `make up` / `make down`
(ops.services). Not engine code (acd/) and not flow entrypoints (flows/, which stays thin); like flows/, it is
not part of the wheel."""
