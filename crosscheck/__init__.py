"""crosscheck: analytic and numeric receptive fields side by side (work in progress)."""
