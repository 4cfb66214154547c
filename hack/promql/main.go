// Command promql checks PromQL expressions with the real Prometheus query parser
// (github.com/prometheus/prometheus/promql/parser, the code Prometheus and promtool run): the tests feed it
// every expression of the chart's alert rules and Grafana dashboard, instead of checking only their JSON shape.
//
//	echo '[{"name": "alert X", "expr": "rate(x_total[5m]) > 0"}]' | promql
//	promql rules < groups.yaml     # a rules file ({groups: [...]}, a PrometheusRule's spec), as promtool checks it
//	promql eval < case.json        # evaluate expressions on series written in the promqltest "load" language
//
// Expressions: prints a JSON array, one object per input in order: {"name", "error" (empty when it parses),
// "metrics" (the metric names its selectors use, sorted), "type" (the value type: vector, scalar, matrix, string)}.
// Rules: prints {"errors": [...], "rules": [{"name", "expr"}, ...]}: the errors of rulefmt.Parse (the checks of
// `promtool check rules`: YAML fields, durations, label names, expressions, annotation templates) and every rule.
// Eval: stdin {"load": "load 1m\n  metric{a=\"b\"} 0+1x10", "queries": [{"name", "expr", "at" (seconds since the
// load's start)}]}; prints one {"name", "error", "result": [{"labels", "value"}]} per query: the instant vector (or
// scalar) the real engine computes there, the way an alert rule sees it (promtool test rules loads series this way).
// Exit status: 0 when the input was read (whatever it holds), 1 when it cannot be read as such.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
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

type evalCase struct {
	Load    string `json:"load"`
	Queries []struct {
		Name string  `json:"name"`
		Expr string  `json:"expr"`
		At   float64 `json:"at"`
	} `json:"queries"`
}

type sample struct {
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
}

type evalResult struct {
	Name   string   `json:"name"`
	Error  string   `json:"error"`
	Result []sample `json:"result"`
}

func eval(data []byte) ([]evalResult, error) {
	var c evalCase
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	ll, err := promqltest.NewLazyLoader(c.Load, promqltest.LazyLoaderOpts{EnableAtModifier: true, EnableNegativeOffset: true})
	if err != nil {
		return nil, err
	}
	defer ll.Close()
	out := make([]evalResult, 0, len(c.Queries))
	for _, q := range c.Queries {
		r := evalResult{Name: q.Name, Result: []sample{}}
		at := time.Unix(0, 0).UTC().Add(time.Duration(q.At * float64(time.Second)))
		ll.WithSamplesTill(at, func(e error) { err = e })
		if err != nil {
			return nil, err
		}
		query, qerr := ll.QueryEngine().NewInstantQuery(ll.Context(), ll.Queryable(), nil, q.Expr, at)
		if qerr == nil {
			res := query.Exec(ll.Context())
			qerr = res.Err
			switch v := res.Value.(type) {
			case promql.Vector:
				for _, s := range v {
					r.Result = append(r.Result, sample{Labels: s.Metric.Map(), Value: s.F})
				}
			case promql.Scalar:
				r.Result = append(r.Result, sample{Labels: map[string]string{}, Value: v.V})
			}
			query.Close()
		}
		if qerr != nil {
			r.Error = qerr.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err == nil && len(os.Args) > 1 && os.Args[1] == "eval" {
		var out []evalResult
		if out, err = eval(data); err == nil {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			err = enc.Encode(out)
		}
	} else if err == nil && len(os.Args) > 1 && os.Args[1] == "rules" {
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
		fmt.Fprintf(os.Stderr, "promql: %v (stdin: a JSON array of {\"name\", \"expr\"}, with the argument rules a rules file, with eval a case)\n", err)
		os.Exit(1)
	}
}
