"""One module per forge and concern: webhook normalization, API clients, App auth."""
