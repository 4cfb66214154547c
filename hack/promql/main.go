// Command promql checks PromQL expressions with the real Prometheus query parser
// (github.com/prometheus/prometheus/promql/parser, the code Prometheus and promtool run): the tests feed it
// every expression of the chart's alert rules and Grafana dashboard, instead of checking only their JSON shape.
//
//	echo '[{"name": "alert X", "expr": "rate(x_total[5m]) > 0"}]' | promql
//	promql rules < groups.yaml     # a rules file ({groups: [...]}, a PrometheusRule's spec), as promtool checks it
//
// Expressions: prints a JSON array, one object per input in order: {"name", "error" (empty when it parses),
// "metrics" (the metric names its selectors use, sorted), "type" (the value type: vector, scalar, matrix, string)}.
// Rules: prints {"errors": [...], "rules": [{"name", "expr"}, ...]}: the errors of rulefmt.Parse (the checks of
// `promtool check rules`: YAML fields, durations, label names, expressions, annotation templates) and every rule.
// Exit status: 0 when the input was read (whatever it holds), 1 when it cannot be read as such.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"log/slog"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type input struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
}

type result struct {
	Name    string   `json:"name"`
	Error   string   `json:"error"`
	Metrics []string `json:"metrics"`
	Type    string   `json:"type"`
}

func check(in input) result {
	r := result{Name: in.Name, Metrics: []string{}}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(in.Expr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Type = string(expr.Type())
	seen := map[string]bool{}
	for _, sel := range parser.ExtractSelectors(expr) {
		for _, m := range sel {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual && !seen[m.Value] {
				seen[m.Value] = true
				r.Metrics = append(r.Metrics, m.Value)
			}
		}
	}
	sort.Strings(r.Metrics)
	return r
}

type rule struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
}

type rulesResult struct {
	Errors []string `json:"errors"`
	Rules  []rule   `json:"rules"`
}

func checkRules(data []byte) rulesResult {
	r := rulesResult{Errors: []string{}, Rules: []rule{}}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, parser.NewParser(parser.Options{}), logger)
	for _, e := range errs {
		r.Errors = append(r.Errors, e.Error())
	}
	if groups != nil {
		for _, g := range groups.Groups {
			for _, rl := range g.Rules {
				name := rl.Alert
				if name == "" {
					name = rl.Record
				}
				r.Rules = append(r.Rules, rule{Name: name, Expr: rl.Expr})
			}
		}
	}
	return r
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err == nil && len(os.Args) > 1 && os.Args[1] == "rules" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(checkRules(data))
	} else if err == nil {
		var ins []input
		if err = json.Unmarshal(data, &ins); err == nil {
			out := make([]result, 0, len(ins))
			for _, in := range ins {
				out = append(out, check(in))
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(out)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "promql: %v (stdin: a JSON array of {\"name\", \"expr\"}, or with the argument rules a rules file)\n", err)
		os.Exit(1)
	}
}
