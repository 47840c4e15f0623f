#!/usr/bin/python3
"""Parses Prometheus text exposition (stdin) with the reference parser
(Debian's python3-prometheus-client, hence /usr/bin/python3) and prints
every sample as one JSON object:
{"samples": [{"name", "labels", "value"}], "families": {name: type}}.
Exits 1 with the parser's message when the text is not valid."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    samples = []
    families = {}
    try:
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for sample in family.samples:
                samples.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    except Exception as error:  # the parser raises ValueError and friends
        print(f"invalid exposition: {error}", file=sys.stderr)
        return 1
    json.dump({"samples": samples, "families": families}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
