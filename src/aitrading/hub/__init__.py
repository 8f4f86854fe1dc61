"""Central hub (port 8010): service registry, health aggregation, dependency graph, ErrorDNA."""
