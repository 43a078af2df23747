"""`eden-mlx data prepare`: raw logs and databases -> clean, mixed, split, documented training
sets. spec (the recipe) -> sources -> convert -> funnel (filters, pii, dedup) -> mixing ->
splits -> metadata; pipeline runs them in that order."""
