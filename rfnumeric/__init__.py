"""rfnumeric: receptive fields measured by a gradient probe (work in progress)."""
