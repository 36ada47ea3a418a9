"""The tools around the config: init (a starter config), schema (the JSON Schema), plot (training curves), runs (a table of runs)."""
