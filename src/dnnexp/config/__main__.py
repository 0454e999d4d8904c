"""``python -m dnnexp.config``: every config key as a Markdown table (type, default, allowed values, meaning), for the docs."""

from dnnexp.config.constraints import described
from dnnexp.config.schema import Config


def reference() -> str:
    lines = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for row in described(Config):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") or "-" for cell in row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference())
