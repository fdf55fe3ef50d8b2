"""`make bench`: the studio measured against baselines run in the same process."""
