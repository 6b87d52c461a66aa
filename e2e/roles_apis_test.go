package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/api"
)

// TestRolesAPIsThroughGateways: the user-facing APIs work unchanged when
// Ember runs as two `ember gateway` and a leader `ember controller` on
// PostgreSQL. A function deployed through gateway 1 is called through
// gateway 2 in the OpenAI shape; a Replicate-shaped prediction created
// through one gateway is read through the other; a function's instances
// and logs, which live on the leader, are listed through a gateway; its
// usage and budget (metered on the leader) read the same through either
// gateway; and a function over its budget with action scale-to-zero is
// refused with 429 by both gateways.
func TestRolesAPIsThroughGateways(t *testing.T) {
	re := newRolesEnv(t)
	c := startController(t, "ctl-1", re.env, re.kube...)
	eventually(t, 30*time.Second, "ctl-1 leads", func() bool { return c.leads(re.token) })
	g1, g2 := re.gateways(t)
	eventually(t, 30*time.Second, "both gateways joined", func() bool {
		return g1.call("GET", "/readyz", "").status == 200 && g2.call("GET", "/readyz", "").status == 200
	})

	g1.deploy(simSpec("chat", "{min: 0, max: 1, idle_timeout: 60s}", "env: {SIM_GREETING: hello-from-the-leader}"))
	eventually(t, 10*time.Second, "gateway 2 has chat", func() bool { return g2.call("GET", "/v1/functions/chat", "").status == 200 })

	t.Run("openai", func(t *testing.T) {
		r := g2.call("POST", "/v1/chat/completions", `{"model": "chat", "messages": [{"role": "user", "content": "one two three"}]}`)
		if r.status != 200 {
			t.Fatalf("chat completion through gateway 2: %d %s", r.status, r.body)
		}
		var out struct {
			Object  string `json:"object"`
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		decode(t, r.body, &out)
		if out.Object != "chat.completion" || len(out.Choices) != 1 || out.Choices[0].Message.Content == "" {
			t.Errorf("answer %s, want an OpenAI chat.completion with one choice", r.body)
		}
		bad := g1.call("POST", "/v1/chat/completions", `{"model": "nope", "messages": []}`)
		if bad.status != 404 || !strings.Contains(string(bad.body), "model_not_found") {
			t.Errorf("unknown model through gateway 1: %d %s, want 404 model_not_found", bad.status, bad.body)
		}
	})

	t.Run("replicate", func(t *testing.T) {
		r := g1.call("POST", "/v1/predictions", `{"model": "chat", "input": {"echo": "across gateways"}}`)
		if r.status != 201 {
			t.Fatalf("create prediction through gateway 1: %d %s", r.status, r.body)
		}
		var p api.Prediction
		decode(t, r.body, &p)
		var got api.Prediction
		eventually(t, 30*time.Second, "the prediction succeeded, read through gateway 2", func() bool {
			r := g2.call("GET", "/v1/predictions/"+p.ID, "")
			return r.status == 200 && json.Unmarshal(r.body, &got) == nil && got.Status == "succeeded"
		})
		if out, _ := json.Marshal(got.Output); !strings.Contains(string(out), "across gateways") {
			t.Errorf("output %s, want the echoed input", out)
		}
	})

	t.Run("instances and logs", func(t *testing.T) {
		ins := g2.instances("chat")
		if len(ins) != 1 || ins[0].State != "ready" || ins[0].Function != "chat" {
			t.Fatalf("instances of chat through gateway 2 = %+v, want the leader's one ready instance", ins)
		}
		var lines []api.LogLine
		eventually(t, 10*time.Second, "chat's log lines through gateway 1", func() bool {
			r := g1.call("GET", "/v1/functions/chat/logs?tail=50", "")
			return r.status == 200 && json.Unmarshal(r.body, &lines) == nil && len(lines) > 0
		})
		if lines[0].Instance != ins[0].ID {
			t.Errorf("log lines %+v, want lines of instance %s", lines, ins[0].ID)
		}
	})

	t.Run("budgets and usage", func(t *testing.T) {
		// The cpu class costs $0.0000125/s: a live instance spends
		// $0.00001 in 0.8 s: the first call ends well before.
		g2.deploy(simSpec("spendy", "{min: 0, max: 1, idle_timeout: 60s}", "budget: {usd_per_day: 0.00001, action: scale-to-zero}"))
		eventually(t, 10*time.Second, "gateway 1 has spendy", func() bool { return g1.call("GET", "/v1/functions/spendy", "").status == 200 })
		if r := g1.call("POST", "/v1/run/spendy/predict", `{}`); r.status != 200 {
			t.Fatalf("first call: %d %s", r.status, r.body)
		}
		for i, gw := range []*server{g1, g2} {
			eventually(t, 15*time.Second, "a call over budget refused", func() bool {
				r := gw.call("POST", "/v1/run/spendy/predict", `{}`)
				return r.status == 429 && strings.Contains(string(r.body), "budget_exceeded")
			})
			var rep api.UsageReport
			eventually(t, 30*time.Second, "usage with spendy's spend over its budget", func() bool {
				r := gw.call("GET", "/v1/usage?function=spendy", "")
				if r.status != 200 || json.Unmarshal(r.body, &rep) != nil || len(rep.Functions) != 1 {
					return false
				}
				b := rep.Functions[0].Budget
				return b != nil && b.Over && b.SpentUSD > 0 && rep.Functions[0].Requests >= 1
			})
			t.Logf("gateway %d: spendy spent $%.7f of $%g, %d requests metered", i+1,
				rep.Functions[0].Budget.SpentUSD, rep.Functions[0].Budget.USDPerDay, rep.Functions[0].Requests)
		}
	})
}
