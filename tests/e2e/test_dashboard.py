"""dashboards/tollgate.json cannot drift from the metrics Tollgate emits: every PromQL expression
(panel queries and template variables) is parsed by a small parser for the PromQL subset the
dashboard uses, and every selected metric, label matcher and grouping label must be one of the
names and labels below (Envoy's Prometheus names of the filter's labelled metrics, after
`stats_tags` extraction). No Grafana or Prometheus runs here; this checks names and syntax."""

import json
import re

import pytest

from harness import REPO

DASHBOARD_PATH = REPO / "dashboards" / "tollgate.json"
DASHBOARD = json.loads(DASHBOARD_PATH.read_text())

# The filter's metrics (`tollgate.<name>.<label>.<value>…`, Envoy `wasmcustom.tollgate.…`) as
# Prometheus sees them, with their labels.
COUNTERS = {
    "tollgate_requests": {"provider", "model", "tenant", "outcome"},
    "tollgate_tokens": {"provider", "model", "tenant", "type"},
    "tollgate_cost_nano_usd": {"provider", "model", "tenant"},
    "tollgate_guardrail_findings": {"policy", "check", "detector", "action", "phase", "mode"},
    "tollgate_guardrail_blocks": {"policy", "check", "phase"},
}
HISTOGRAMS = {
    "tollgate_duration_ms": {"provider", "model"},
    "tollgate_ttft_ms": {"provider", "model"},
}
METRICS = dict(COUNTERS)
for name, labels in HISTOGRAMS.items():
    METRICS[f"{name}_bucket"] = labels | {"le"}
    METRICS[f"{name}_sum"] = labels
    METRICS[f"{name}_count"] = labels
LABEL_VALUES = {
    "outcome": {"complete", "upstream_error", "truncated", "rejected"},
    "type": {"input", "output", "cache_read", "cache_write", "reasoning"},
    "phase": {"request", "response"},
    "mode": {"enforced", "shadow"},
}

AGGREGATIONS = {"sum", "avg", "min", "max", "count"}
FUNCTIONS = {"rate": ["range"], "increase": ["range"], "histogram_quantile": ["scalar", "vector"],
             "sort_desc": ["vector"], "sort": ["vector"]}
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<duration>\[[^\]]*\])
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>!=|=~|!~|==|>=|<=|[-+*/{}(),=<>])
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
""", re.X)


def tokenize(expr):
    tokens, at = [], 0
    while at < len(expr):
        match = TOKEN.match(expr, at)
        if not match:
            raise SyntaxError(f"unexpected {expr[at:at + 20]!r}")
        at = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


class Parser:
    """Recursive descent over the subset: numbers, selectors with matchers and ranges, functions,
    aggregations with `by`/`without`, parentheses and + - * / between them. Collects what each
    selector and grouping names; returns each expression's type (scalar, vector or range)."""

    def __init__(self, expr):
        self.tokens = tokenize(expr)
        self.at = 0
        self.selectors = []   # (metric, {label: (op, value)})
        self.groupings = []   # (labels grouped by, metrics below the aggregation)

    def peek(self, offset=0):
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None)

    def take(self, value=None, kind=None):
        token = self.peek()
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise SyntaxError(f"expected {value or kind}, got {token[1]!r}")
        self.at += 1
        return token[1]

    def parse(self):
        kind = self.expression()
        if self.peek() != (None, None):
            raise SyntaxError(f"trailing {self.peek()[1]!r}")
        return kind

    def expression(self):
        left = self.unary()
        while self.peek()[1] in ("+", "-", "*", "/"):
            self.take()
            right = self.unary()
            if "range" in (left, right):
                raise SyntaxError("arithmetic on a range vector")
            left = "vector" if "vector" in (left, right) else "scalar"
        return left

    def unary(self):
        if self.peek()[1] == "-":
            self.take()
        return self.primary()

    def primary(self):
        kind, value = self.peek()
        if kind == "number":
            self.take()
            return "scalar"
        if value == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        if kind != "ident":
            raise SyntaxError(f"unexpected {value!r}")
        if value in AGGREGATIONS:
            return self.aggregation()
        if self.peek(1)[1] == "(":
            return self.function()
        return self.selector()

    def aggregation(self):
        self.take()
        grouping = self.grouping() if self.peek()[1] in ("by", "without") else None
        first = len(self.selectors)
        self.take("(")
        if self.expression() != "vector":
            raise SyntaxError("aggregation of a non-vector")
        self.take(")")
        if grouping is None and self.peek()[1] in ("by", "without"):
            grouping = self.grouping()
        if grouping:
            self.groupings.append((grouping, [metric for metric, _ in self.selectors[first:]]))
        return "vector"

    def grouping(self):
        self.take()
        self.take("(")
        labels = [self.take(kind="ident")]
        while self.peek()[1] == ",":
            self.take()
            labels.append(self.take(kind="ident"))
        self.take(")")
        return labels

    def function(self):
        name = self.take()
        if name not in FUNCTIONS:
            raise SyntaxError(f"function {name} is not in the checked subset")
        self.take("(")
        kinds = [self.expression()]
        while self.peek()[1] == ",":
            self.take()
            kinds.append(self.expression())
        self.take(")")
        if kinds != FUNCTIONS[name]:
            raise SyntaxError(f"{name}({', '.join(kinds)}): expected {FUNCTIONS[name]}")
        return "vector"

    def selector(self):
        metric = self.take(kind="ident")
        matchers = {}
        if self.peek()[1] == "{":
            self.take()
            while self.peek()[1] != "}":
                label = self.take(kind="ident")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise SyntaxError(f"matcher operator {op!r}")
                matchers[label] = (op, json.loads(self.take(kind="string")))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        self.selectors.append((metric, matchers))
        if self.peek()[0] == "duration":
            duration = self.take()[1:-1]
            if not re.fullmatch(r"\d+[smhdw]", duration):
                raise SyntaxError(f"range [{duration}]")
            return "range"
        return "vector"


def grafana_to_promql(expr):
    """What Prometheus receives: Grafana's range macros and template variables substituted."""
    for macro, value in GRAFANA_RANGES.items():
        expr = expr.replace(f"[{macro}]", f"[{value}]")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def panel_exprs():
    exprs = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            exprs.append((f"{panel['title']} {target['refId']}", target["expr"]))
    return exprs


def test_dashboard_has_queries():
    assert len(panel_exprs()) >= 15


@pytest.mark.parametrize("where, expr", panel_exprs(), ids=[w for w, _ in panel_exprs()])
def test_every_query_parses_and_uses_only_tollgates_metrics_and_labels(where, expr):
    parser = Parser(grafana_to_promql(expr))
    assert parser.parse() in ("vector", "scalar")
    assert parser.selectors, "the query selects a metric"
    for metric, matchers in parser.selectors:
        assert metric in METRICS, f"{metric} is not a metric Tollgate emits"
        for label, (op, value) in matchers.items():
            assert label in METRICS[metric], f"{metric} has no label {label}"
            if label in LABEL_VALUES and op in ("=", "!="):
                assert value in LABEL_VALUES[label], f"{label}={value!r}"
            if label in LABEL_VALUES and op in ("=~", "!~") and value != ".*":
                assert set(value.split("|")) <= LABEL_VALUES[label], f"{label}=~{value!r}"
    for labels, metrics in parser.groupings:
        for label in labels:
            for metric in metrics:
                assert label in METRICS[metric], f"grouping by {label}, which {metric} lacks"
    for metric, _ in parser.selectors:
        if metric.endswith("_bucket"):
            assert "histogram_quantile(" in expr and "le" in sum((g for g, _ in parser.groupings), [])
    # The cost counter is nano-USD: every query that reads it converts to USD.
    if any(metric == "tollgate_cost_nano_usd" for metric, _ in parser.selectors):
        assert "/ 1e9" in expr


def test_template_variables_read_labels_the_metrics_have():
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("tenant", "model", "provider"):
        query = variables[name]["query"]["query"]
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()
        assert metric in METRICS and label == name and label in METRICS[metric]
        assert variables[name]["allValue"] == ".*" and variables[name]["includeAll"]


def test_panels_are_laid_out_and_use_the_datasource_variable():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    occupied = set()
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


@pytest.mark.parametrize("expr, problem", [
    ('sum(rate(tollgate_request{tenant="a"}[5m]))', "not a metric"),
    ('sum by (tenant) (rate(tollgate_duration_ms_count[5m]))', "grouping by tenant"),
    ('sum(rate(tollgate_tokens{type="prompt"}[5m]))', "type='prompt'"),
    ('sum(rate(tollgate_tokens{kind="input"}[5m]))', "has no label kind"),
    ('sum(rate(tollgate_cost_nano_usd[5m]))', "/ 1e9"),
    ('sum(rate(tollgate_requests[5m])', "expected )"),
    ('sum(tollgate_requests[5m])', "non-vector"),
    ('rate(tollgate_requests)', "expected ['range']"),
])
def test_the_checks_catch_drift_and_bad_syntax(expr, problem):
    with pytest.raises((AssertionError, SyntaxError), match=re.escape(problem)):
        test_every_query_parses_and_uses_only_tollgates_metrics_and_labels("mutant", expr)


def test_the_names_and_labels_are_what_a_real_envoy_exports(envoy):
    """The lists above are not a guess: a real Envoy with the shipped configuration serves a
    completion, a masked request and a refused one, then every metric name above appears on its
    /stats/prometheus with exactly those labels."""
    from conftest import post

    email = "dashboard.check@example.com"
    for content in ("hi", f"mail {email}", "key sk-proj-Zq8xV3mN7bR2tY6uK1wP4sL9dF5gH0jA"):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
        post(envoy.port, "/v1/chat/completions", body)
    _, text = envoy.admin("/stats/prometheus")
    seen = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)\{([^}]*)\} ", line)
        if match:
            labels = {pair.split("=", 1)[0] for pair in match.group(2).split(",") if pair}
            seen.setdefault(match.group(1), set()).update(labels)
    for name, labels in METRICS.items():
        assert name in seen, f"{name} is not on a real Envoy's /stats/prometheus"
        assert seen[name] == labels, name
