#!/usr/bin/env python3
"""Checks a Grafana dashboard against a /metrics scrape (for
tests/package/test_grafana.sh):

  check_grafana.py DASHBOARD.json METRICS.txt

- every metric name a PromQL expression uses (panels' targets, template
  variables' queries) is the name of a sample in the scrape (histograms as
  NAME_bucket, NAME_sum, NAME_count, as the scrape writes them);
- every label an expression groups by (`by (...)`) or matches on
  (`{label=~...}`) is a label of a sample of a metric in that expression
  (`instance` and `job` are Prometheus's own, added at scrape time; `le`
  belongs to histogram buckets);
- the panels: unique ids, inside the 24-column grid, not overlapping; every
  panel but a row has targets, each with an expression, on the dashboard's
  data source variable.
Prints one line per problem and exits 1 if there is any."""
import json
import re
import sys

NAME = re.compile(r'\b((?:spillway|process)_[a-zA-Z0-9_]+)\b')
BY = re.compile(r'\bby\s*\(([^)]*)\)')
SELECTOR = re.compile(r'\b((?:spillway|process)_[a-zA-Z0-9_]+)\s*\{([^}]*)\}')
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')
PROMETHEUS_LABELS = {'instance', 'job'}


def scrape(path):
    labels = {}  # sample name -> set of label names
    for line in open(path):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s', line)
        if not m:
            continue
        labels.setdefault(m.group(1), set()).update(LABEL.findall(m.group(2) or ''))
    return labels


def expressions(d):
    """(where, expr) of every PromQL expression of the dashboard."""
    out = []
    for p in d.get('panels', []):
        for sub in [p] + p.get('panels', []):
            for t in sub.get('targets', []):
                out.append(('panel %r %s' % (sub.get('title'), t.get('refId')), t.get('expr', '')))
    for v in d.get('templating', {}).get('list', []):
        if v.get('type') == 'query':
            q = v.get('query')
            out.append(('variable %r' % v.get('name'), q.get('query', '') if isinstance(q, dict) else q or ''))
    return out


def check(d, have):
    errors = []
    for where, e in expressions(d):
        if not e.strip():
            errors.append('%s: empty expression' % where)
            continue
        names = set(NAME.findall(e))
        if not names:
            errors.append('%s: uses no Spillway metric: %s' % (where, e))
        for n in sorted(names):
            if n not in have:
                errors.append('%s: %s is not in the scrape' % (where, n))
        known = set().union(*(have.get(n, set()) for n in names)) if names else set()
        for grp in BY.findall(e):
            for l in [x.strip() for x in grp.split(',') if x.strip()]:
                if l not in known and l not in PROMETHEUS_LABELS:
                    errors.append('%s: groups by %s, a label none of %s has' % (where, l, sorted(names)))
        for n, body in SELECTOR.findall(e):
            for l in MATCHER.findall(body):
                if l not in have.get(n, set()) and l not in PROMETHEUS_LABELS:
                    errors.append('%s: matches on %s, a label %s does not have' % (where, l, n))
    ids = set()
    boxes = []
    for p in d.get('panels', []):
        if p.get('id') in ids:
            errors.append('panel id %s twice' % p.get('id'))
        ids.add(p.get('id'))
        g = p.get('gridPos', {})
        x, y, w, h = g.get('x', -1), g.get('y', -1), g.get('w', 0), g.get('h', 0)
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 24:
            errors.append('panel %r: gridPos %s is outside the grid' % (p.get('title'), g))
        for (bx, by, bw, bh, bt) in boxes:
            if x < bx + bw and bx < x + w and y < by + bh and by < y + h:
                errors.append('panels %r and %r overlap' % (bt, p.get('title')))
        boxes.append((x, y, w, h, p.get('title')))
        if p.get('type') == 'row':
            continue
        if not p.get('targets'):
            errors.append('panel %r has no targets' % p.get('title'))
        for t in p.get('targets', []):
            ds = (t.get('datasource') or p.get('datasource') or {}).get('uid')
            if ds != '${datasource}':
                errors.append('panel %r: data source %r, not the dashboard\'s ${datasource}' % (p.get('title'), ds))
    return errors


def main():
    d = json.load(open(sys.argv[1]))
    errors = check(d, scrape(sys.argv[2]))
    for e in errors:
        print('check_grafana: ' + e)
    n = len(expressions(d))
    if not errors:
        print('check_grafana: %d expressions, every metric and label found' % n)
    sys.exit(1 if errors else 0)


if __name__ == '__main__':
    main()
