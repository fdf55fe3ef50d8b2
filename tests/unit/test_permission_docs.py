"""The README's permission table is the one the studio enforces and serves."""

from pathlib import Path

from studio.permissions import PERMISSION_MATRIX, ROLES


def test_the_readme_table_matches_the_matrix():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- permission-matrix:start -->")[1].split("<!-- permission-matrix:end -->")[0]
    rows = [line.strip("| ").split(" | ") for line in table.strip().splitlines()[2:]]
    assert [row[0] for row in rows] == [action for action, _ in PERMISSION_MATRIX]
    for row, (_, allowed) in zip(rows, PERMISSION_MATRIX, strict=True):
        assert {role for role, cell in zip(ROLES, row[1:], strict=True) if cell == "✓"} == allowed, row[0]
