"""Call flows as data: YAML files in ivr_flows/, validated at load, run by the engine."""
