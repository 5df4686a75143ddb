"""Writes an operator-sized CRD bundle (benchmark P13): one YAML file of 16
CustomResourceDefinitions, about 12 MB and 300 000 YAML nodes, with deep schemas and long
descriptions as operators generate them.

    python3 benches/crd_bundle.py DIR [GROUP]
"""
import os
import sys

out = sys.argv[1]
group = sys.argv[2] if len(sys.argv) > 2 else "bundle.bench.berth.dev"
words = ("the field sets how the operator reconciles this part of the resource; "
         "when unset the controller uses its default, which can change between releases. ")


def description(n):
    return (words * (n // len(words) + 1))[:n]


def schema(depth, width, leaves):
    if depth == 0:
        return {f"leaf{k}": {"type": "string", "description": description(150)} for k in range(leaves)}
    return {
        f"part{j}": {"type": "object", "description": description(200),
                     "properties": schema(depth - 1, width, leaves)}
        for j in range(width)
    }


def emit(value, indent, lines):
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            emit(item, indent + 1, lines)
        elif isinstance(item, list):
            lines.append(f"{pad}{key}:")
            for element in item:
                lines.append(f"{pad}- {element}")
        else:
            lines.append(f"{pad}{key}: {item!r}" if isinstance(item, str) else f"{pad}{key}: {item}")


os.makedirs(out, exist_ok=True)
lines = []
for i in range(16):
    kind = f"Widget{i:02d}"
    plural = f"widgets{i:02d}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": f"widget{i:02d}", "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": {},
        },
    }
    lines.append("---")
    emit(crd, 0, lines)
    lines.pop()  # versions is a list: written by hand below
    spec = schema(2, 9, 37)
    lines.append("  versions:")
    lines.append("  - name: v1")
    lines.append("    served: true")
    lines.append("    storage: true")
    lines.append("    schema:")
    lines.append("      openAPIV3Schema:")
    lines.append("        type: object")
    lines.append("        properties:")
    lines.append("          spec:")
    lines.append("            type: object")
    lines.append("            properties:")
    emit(spec, 7, lines)
with open(os.path.join(out, "bundle.yaml"), "w") as f:
    f.write("\n".join(lines) + "\n")
