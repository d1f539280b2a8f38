#!/usr/bin/env python3
"""Writes `openziti-edge-api.json`, Weft's form of OpenZiti's API contract, from the
bundled Swagger 2.0 documents of openziti/edge-api (`client.yml`, `management.yml` at the
repository root, generated there from `source/`).

    python3 controller-lite/contract/generate.py /path/to/edge-api-checkout > \
        controller-lite/contract/openziti-edge-api.json

The checkout's HEAD commit is recorded in the output. Needs PyYAML. The output holds
facts only: every operation (method, path, operationId, which statuses answer which
shape, whether the success body is JSON) and, for every shape a response can reach, a
JSON Schema (the subset `weft_controller::schema_check` checks) with:

- `allOf` flattened into one object (properties and `required` merged), `$ref`s between
  shapes kept as `#/definitions/NAME` of this file;
- `x-nullable` as `null` among the allowed types (nothing else may be `null`);
- `required` names the shape does not declare dropped (go-swagger ignores them; the
  spec has a few, listed in `ignoredRequired`);
- a bare `{type: object}` (no properties) as any value: go-swagger maps it to
  `interface{}`;
- a discriminated base (posture checks) checked as the base;
- descriptions, examples, formats and request-side limits left out.
"""

import json
import subprocess
import sys

import yaml

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
APIS = (("edge-client", "client.yml"), ("edge-management", "management.yml"))


def load(root):
    specs = {}
    for api, name in APIS:
        with open(f"{root}/{name}", encoding="utf-8") as f:
            specs[api] = yaml.safe_load(f)
    return specs


class Converter:
    def __init__(self, definitions):
        self.defs = definitions
        self.out = {}
        self.pending = []
        self.ignored = {}

    def ref_name(self, ref):
        prefix = "#/definitions/"
        if not ref.startswith(prefix):
            raise ValueError(f"unsupported $ref {ref}")
        return ref[len(prefix):]

    def use(self, name):
        if name not in self.out and name not in self.pending:
            self.pending.append(name)
        return {"$ref": f"#/definitions/{name}"}

    def run(self):
        while self.pending:
            name = self.pending.pop()
            if name in self.out:
                continue
            self.out[name] = None  # placeholder against cycles
            self.out[name] = self.conv(self.defs[name], name)
        return self.out

    def flatten(self, schema, seen=()):
        """(properties, required, additionalProperties) of an allOf/object schema."""
        if "$ref" in schema:
            name = self.ref_name(schema["$ref"])
            if name in seen:
                return {}, [], None
            return self.flatten(self.defs[name], seen + (name,))
        props, required, addl = {}, [], None
        for part in schema.get("allOf", []):
            p, r, a = self.flatten(part, seen)
            props.update(p)
            required += [x for x in r if x not in required]
            addl = a if a is not None else addl
        props.update(schema.get("properties", {}))
        required += [x for x in schema.get("required", []) if x not in required]
        if "additionalProperties" in schema:
            addl = schema["additionalProperties"]
        return props, required, addl

    def nullable(self, out, schema):
        if not schema.get("x-nullable"):
            return out
        if "type" in out and isinstance(out["type"], str):
            out["type"] = [out["type"], "null"]
            return out
        if not out:
            return out
        return {"anyOf": [{"type": "null"}, out]}

    def conv(self, schema, where):
        if "$ref" in schema:
            return self.nullable(self.use(self.ref_name(schema["$ref"])), schema)
        t = schema.get("type")
        if "allOf" in schema or "properties" in schema or (
            t == "object" and "additionalProperties" in schema
        ):
            props, required, addl = self.flatten(schema)
            declared = [r for r in required if r in props]
            dropped = [r for r in required if r not in props]
            if dropped:
                self.ignored[where] = dropped
            out = {"type": "object"}
            if declared:
                out["required"] = declared
            if props:
                out["properties"] = {
                    k: self.conv(v, f"{where}.{k}") for k, v in sorted(props.items())
                }
            if isinstance(addl, dict):
                sub = self.conv(addl, f"{where}.*")
                if sub:
                    out["additionalProperties"] = sub
            return self.nullable(out, schema)
        if t == "object" or t is None:
            return {}  # go-swagger: interface{}
        if t == "array":
            out = {"type": "array"}
            if schema.get("items"):  # `controllerSettingsList` has `items: null`
                sub = self.conv(schema["items"], f"{where}[]")
                if sub:
                    out["items"] = sub
            return self.nullable(out, schema)
        if t == "file":
            return {}
        out = {"type": t}
        if "enum" in schema:
            out["enum"] = schema["enum"]
        return self.nullable(out, schema)


def main():
    root = sys.argv[1]
    commit = subprocess.check_output(
        ["git", "-C", root, "rev-parse", "HEAD"], text=True
    ).strip()
    specs = load(root)
    definitions = {}
    for spec in specs.values():
        for name, d in spec["definitions"].items():
            if name in definitions and definitions[name] != d:
                raise SystemExit(f"definition {name} differs between the documents")
            definitions[name] = d
    conv = Converter(definitions)
    apis = {}
    for api, spec in specs.items():
        ops = []
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if method not in METHODS:
                    continue
                produces = op.get("produces", spec.get("produces", []))
                # Two operations have no operationId (DELETE /current-api-session).
                op_id = op.get("operationId", "")
                responses = {}
                for status, r in sorted(op["responses"].items()):
                    s = r.get("schema")
                    responses[status] = conv.conv(s, op_id or path) if s else None
                ops.append(
                    {
                        "method": method.upper(),
                        "path": path,
                        "operationId": op_id,
                        "json": any(p.startswith("application/json") for p in produces),
                        "responses": responses,
                    }
                )
        ops.sort(key=lambda o: (o["path"], o["method"]))
        apis[api] = {
            "basePath": spec["basePath"],
            "version": spec["info"]["version"],
            "operations": ops,
        }
    shapes = conv.run()
    out = {
        "source": {
            "repository": "openziti/edge-api",
            "commit": commit,
            "files": [name for _, name in APIS],
            "generator": "controller-lite/contract/generate.py",
        },
        "ignoredRequired": dict(sorted(conv.ignored.items())),
        "apis": apis,
        "definitions": dict(sorted(shapes.items())),
    }
    # One operation or shape per line: small diffs when the spec moves.
    lines = ["{"]
    top = list(out.items())
    for i, (k, v) in enumerate(top):
        comma = "," if i + 1 < len(top) else ""
        if k == "apis":
            lines.append(f' "apis": {{')
            for j, (api, a) in enumerate(v.items()):
                lines.append(f'  {json.dumps(api)}: {{')
                lines.append(f'   "basePath": {json.dumps(a["basePath"])},')
                lines.append(f'   "version": {json.dumps(a["version"])},')
                lines.append('   "operations": [')
                for n, op in enumerate(a["operations"]):
                    c = "," if n + 1 < len(a["operations"]) else ""
                    lines.append("    " + json.dumps(op, sort_keys=True) + c)
                lines.append("   ]")
                lines.append("  }" + ("," if j + 1 < len(v) else ""))
            lines.append(" }" + comma)
        elif k == "definitions":
            lines.append(' "definitions": {')
            items = list(v.items())
            for n, (name, s) in enumerate(items):
                c = "," if n + 1 < len(items) else ""
                lines.append(f"  {json.dumps(name)}: {json.dumps(s, sort_keys=True)}{c}")
            lines.append(" }" + comma)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}{comma}")
    lines.append("}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
