import ChorusJSON
import ChorusTrace

/// A recorded run as one JSON document, and that document as a self-contained HTML timeline.
enum RunExport {
    /// The run, its steps, its model calls with their request and response bodies (parsed
    /// when they are JSON), and its event log.
    static func document(_ run: RunRecord, store: any TraceBackend) throws -> JSONValue {
        let steps = try store.steps(ofRun: run.id)
        var bodies: [String: JSONValue] = [:]
        func body(_ hash: String?) throws -> JSONValue {
            guard let hash else { return .null }
            if let known = bodies[hash] { return known }
            let bytes = try store.blob(hash) ?? []
            let value = (try? JSONValue(parsing: bytes)) ?? .string(String(decoding: bytes, as: UTF8.self))
            bodies[hash] = value
            return value
        }
        let calls = try store.modelCalls(ofRun: run.id).map { call -> JSONValue in
            .object([
                "step": .string(call.stepPath), "attempt": .number(Double(call.attempt)), "model": .string(call.model),
                "provider_model": .string(call.providerModel), "url": .string(call.url),
                "status": call.httpStatus.map { .number(Double($0)) } ?? .null, "error": call.error.map { .string($0) } ?? .null,
                "tokens_in": .number(Double(call.tokensIn)), "tokens_out": .number(Double(call.tokensOut)), "cost": .number(call.cost),
                "started_at": .number(call.startedAt), "latency_ms": .number(call.latencyMs),
                "request_sha256": .string(call.requestHash), "response_sha256": call.responseHash.map { .string($0) } ?? .null,
                "request": try body(call.requestHash), "response": try body(call.responseHash),
            ])
        }
        let tools = try store.toolCalls(ofRun: run.id).map { call -> JSONValue in
            .object([
                "step": .string(call.stepPath), "attempt": .number(Double(call.attempt)), "index": .number(Double(call.callIndex)),
                "call_id": .string(call.callID), "tool": .string(call.tool), "kind": .string(call.kind),
                "is_error": .bool(call.isError), "exit_status": call.exitStatus.map { .number(Double($0)) } ?? .null,
                "error": call.error.map { .string($0) } ?? .null, "started_at": .number(call.startedAt), "latency_ms": .number(call.latencyMs),
                "input_sha256": .string(call.inputHash), "output_sha256": .string(call.outputHash),
                "input": try body(call.inputHash), "output": try body(call.outputHash),
            ])
        }
        let eventRecords = try store.events(ofRun: run.id)
        let truncations = PlanTruncation.byStep(eventRecords)
        let events = eventRecords.map { event -> JSONValue in
            .object([
                "seq": .number(Double(event.seq)), "at": .number(event.at), "kind": .string(event.kind),
                "step": event.stepPath.map { .string($0) } ?? .null,
                "detail": event.detailJSON.flatMap { try? JSONValue(parsing: $0) } ?? .null,
            ])
        }
        let stepValues = steps.map { step -> JSONValue in
            var object = RunsCommand.stepJSON(step, truncation: truncations[step.path]).objectValue ?? [:]
            object["started_at"] = .number(step.startedAt)
            object["ended_at"] = step.endedAt.map { .number($0) } ?? .null
            object["output"] = step.outputJSON.flatMap { try? JSONValue(parsing: $0) } ?? .null
            object["provenance"] = step.provenanceJSON.flatMap { try? JSONValue(parsing: $0) } ?? .null
            return .object(object)
        }
        return .object([
            "run": RunsCommand.summary(run), "steps": .array(stepValues), "calls": .array(calls), "tool_calls": .array(tools),
            "events": .array(events),
        ])
    }

    /// One HTML file with the document embedded and a timeline drawn by inline script:
    /// nothing is fetched, so it opens anywhere, offline.
    static func html(_ document: JSONValue, title: String) -> String {
        // "</" inside the embedded JSON would end the script element; "<\/" is the same JSON.
        let data = document.text.replacingOccurrences(of: "</", with: "<\\/")
        return template.replacingOccurrences(of: "{{title}}", with: escape(title)).replacingOccurrences(of: "{{data}}", with: data)
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    private static let template = #"""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>chorus run {{title}}</title>
        <style>
        body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
        header { padding: 10px 16px; background: #f4f4f6; border-bottom: 1px solid #ddd; }
        header h1 { font-size: 15px; margin: 0 0 4px; }
        #legend span { display: inline-block; margin-right: 12px; }
        #legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
        #main { display: flex; height: calc(100vh - 70px); }
        #timeline { flex: 3; overflow: auto; position: relative; }
        #detail { flex: 2; overflow: auto; border-left: 1px solid #ddd; padding: 8px 12px; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; }
        .row { position: relative; height: 16px; border-bottom: 1px solid #f2f2f2; }
        .label { position: absolute; left: 4px; width: 236px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; font-size: 11px; color: #555; }
        .lane { position: absolute; left: 244px; right: 8px; top: 0; bottom: 0; }
        .bar { position: absolute; cursor: pointer; border-radius: 2px; }
        .bar.step { top: 2px; height: 12px; opacity: 0.35; }
        .row.lead { background: #eef3fb; } .row.lead .label { color: #1a3d7c; font-weight: 600; }
        .row.lead .bar.step { opacity: 0.6; outline: 1px solid #1a3d7c; }
        .bar.call { top: 5px; height: 6px; }
        .bar.call.error, .bar.tool.error { outline: 1px solid #c00; }
        .bar.tool { top: 11px; height: 4px; background: #555; }
        .mark { position: absolute; top: 0; width: 3px; height: 16px; cursor: pointer; }
        .mark.denied { background: #c00; } .mark.redacted { background: #e6a700; } .mark.boundary { background: #7a00cc; }
        .succeeded { background: #2e9d4f; } .failed { background: #d33; } .cancelled { background: #999; } .running { background: #e6a700; }
        .skipped { background: repeating-linear-gradient(45deg, #bbb, #bbb 3px, #eee 3px, #eee 6px); }
        .row.skipped .label { color: #888; font-style: italic; }
        </style></head>
        <body data-ready="0">
        <header><h1>{{title}}</h1><div id="summary"></div><div id="legend"></div></header>
        <div id="main"><div id="timeline"></div><div id="detail">Click a bar for its prompt and response.</div></div>
        <script type="application/json" id="run-data">{{data}}</script>
        <script>
        (function () {
          var doc = JSON.parse(document.getElementById('run-data').textContent);
          var palette = ['#3366cc', '#9933cc', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#bcbd22', '#1f77b4'];
          var models = {};
          function colour(model) {
            if (!(model in models)) models[model] = palette[Object.keys(models).length % palette.length];
            return models[model];
          }
          function text(value) { return value === null || value === undefined ? '' : (typeof value === 'string' ? value : JSON.stringify(value, null, 2)); }
          var steps = doc.steps.filter(function (s) { return s.path.indexOf('#') < 0; });
          var t0 = Infinity, t1 = -Infinity;
          steps.forEach(function (s) { t0 = Math.min(t0, s.started_at); t1 = Math.max(t1, s.ended_at || s.started_at); });
          var toolCalls = doc.tool_calls || [];
          doc.calls.concat(toolCalls).forEach(function (c) { t0 = Math.min(t0, c.started_at); t1 = Math.max(t1, c.started_at + c.latency_ms / 1000); });
          if (!isFinite(t0)) { t0 = 0; t1 = 1; }
          var span = Math.max(t1 - t0, 0.001);
          function pct(t) { return (100 * (t - t0) / span).toFixed(3) + '%'; }
          function width(d) { return Math.max(100 * d / span, 0.15).toFixed(3) + '%'; }
          var run = doc.run;
          document.getElementById('summary').textContent = run.status + ' · ' + steps.length + ' steps · ' + doc.calls.length +
            ' model calls · ' + toolCalls.length + ' tool calls · tokens ' + run.tokens_in + '/' + run.tokens_out + ' · $' + run.cost.toFixed(5) + ' · ' + span.toFixed(2) + ' s';
          var callsByStep = {};
          doc.calls.forEach(function (c) { (callsByStep[c.step] = callsByStep[c.step] || []).push(c); });
          var verdictsByStep = {};
          (doc.events || []).forEach(function (e) {
            if (e.kind === 'guard_verdict' || e.kind === 'boundary_refused') {
              var step = (e.step || '').split('#')[0];
              (verdictsByStep[step] = verdictsByStep[step] || []).push(e);
            }
          });
          // A route's choice labels its row; a skipped node's row says which route (or
          // condition) skipped it, so a branch not taken never reads as a failure.
          var routes = {};
          (doc.events || []).forEach(function (e) { if (e.kind === 'route_chosen') routes[e.step] = (e.detail || {}).label; });
          var toolsByStep = {};
          toolCalls.forEach(function (c) { (toolsByStep[c.step] = toolsByStep[c.step] || []).push(c); });
          var detail = document.getElementById('detail');
          function show(lines) { detail.textContent = lines.join('\n'); }
          var timeline = document.getElementById('timeline');
          var fragment = document.createDocumentFragment();
          steps.forEach(function (s) {
            // Rows go in the order steps started, so an as_completed lead call sits among the
            // workers it ran beside, labelled with how many findings its prompt held.
            var lead = s.saw_count !== undefined;
            var skipped = s.status === 'skipped' ? ((s.provenance || {}).skipped || 'skipped') : null;
            var routed = s.path in routes ? ' · chose ' + (routes[s.path] === null ? 'no label' : routes[s.path]) : '';
            var row = document.createElement('div'); row.className = 'row' + (lead ? ' lead' : '') + (skipped ? ' skipped' : '');
            if (lead) row.setAttribute('data-saw', String(s.saw_count));
            if (skipped) row.setAttribute('data-skipped', skipped);
            var label = document.createElement('div'); label.className = 'label';
            label.textContent = s.path + (lead ? ' · saw ' + s.saw_count : '') + routed + (skipped ? ' · skipped' : ''); label.title = s.path;
            var lane = document.createElement('div'); lane.className = 'lane';
            var bar = document.createElement('div');
            bar.className = 'bar step ' + s.status;
            bar.style.left = pct(s.started_at); bar.style.width = width((s.ended_at || t1) - s.started_at);
            bar.title = skipped ? s.path + ' · skipped: ' + skipped : s.path + routed + ' · ' + s.status + ' · ' + (s.model || '-') + ' · tokens ' + s.tokens_in + '/' + s.tokens_out +
              ' · $' + s.cost.toFixed(5) + ' · ' + (s.latency_ms === null ? '…' : s.latency_ms + ' ms') +
              (lead ? ' · saw ' + s.saw_count + ' finding' + (s.saw_count === 1 ? '' : 's') + (s.saw_count ? ': ' + s.saw.join(', ') : '') : '') +
              (s.plan_truncated ? ' · planned ' + s.plan_truncated.planned + ', kept ' + s.plan_truncated.kept + ': ' + s.plan_truncated.dropped + ' dropped' : '');
            bar.onclick = function () { show([bar.title, '', 'output:', text(s.output), s.error ? '\nerror: ' + s.error : '']); };
            lane.appendChild(bar);
            (callsByStep[s.path] || []).forEach(function (c) {
              var cb = document.createElement('div');
              cb.className = 'bar call' + (c.error ? ' error' : '');
              cb.style.background = colour(c.model);
              cb.style.left = pct(c.started_at); cb.style.width = width(c.latency_ms / 1000);
              cb.title = c.step + ' attempt ' + c.attempt + ' · ' + c.model + ' · HTTP ' + (c.status === null ? '-' : c.status) +
                (c.error ? ' · ' + c.error : '') + ' · tokens ' + c.tokens_in + '/' + c.tokens_out + ' · $' + c.cost.toFixed(5) +
                ' · ' + c.latency_ms.toFixed(0) + ' ms';
              cb.onclick = function (e) { e.stopPropagation(); show([cb.title, '', 'request:', text(c.request), '', 'response:', text(c.response)]); };
              lane.appendChild(cb);
            });
            (verdictsByStep[s.path] || []).forEach(function (e) {
              var m = document.createElement('div');
              var d = e.detail || {};
              m.className = 'mark ' + (e.kind === 'boundary_refused' ? 'boundary' : (d.verdict || 'denied'));
              m.style.left = pct(e.at);
              m.title = e.kind === 'boundary_refused'
                ? 'data boundary: model ' + d.model + ' refused label ' + d.label + ' (from ' + d.from + ')'
                : d.stage + ' ' + d.guard + ' guard ' + d.verdict + ': ' + (d.reason || d.what || '');
              m.onclick = function (ev) { ev.stopPropagation(); show([m.title]); };
              lane.appendChild(m);
            });
            (toolsByStep[s.path] || []).forEach(function (t) {
              var tb = document.createElement('div');
              tb.className = 'bar tool' + (t.is_error ? ' error' : '');
              tb.style.left = pct(t.started_at); tb.style.width = width(t.latency_ms / 1000);
              tb.title = t.step + ' tool ' + t.tool + ' (' + t.kind + ', answer ' + t.attempt + ' call ' + t.index + ')' +
                (t.exit_status === null ? '' : ' · status ' + t.exit_status) + (t.error ? ' · ' + t.error : '') + ' · ' + t.latency_ms.toFixed(0) + ' ms';
              tb.onclick = function (e) { e.stopPropagation(); show([tb.title, '', 'input:', text(t.input), '', 'output:', text(t.output)]); };
              lane.appendChild(tb);
            });
            row.appendChild(label); row.appendChild(lane); fragment.appendChild(row);
          });
          timeline.appendChild(fragment);
          var legend = document.getElementById('legend');
          ['succeeded', 'failed', 'cancelled', 'running'].concat(steps.some(function (s) { return s.status === 'skipped'; }) ? ['skipped'] : []).forEach(function (s) {
            var item = document.createElement('span'); item.innerHTML = '<i class="' + s + '"></i>step ' + s; legend.appendChild(item);
          });
          if (steps.some(function (s) { return s.saw_count !== undefined; })) {
            var leadLegend = document.createElement('span'); leadLegend.innerHTML = '<i style="outline:1px solid #1a3d7c;background:#eef3fb"></i>lead call (saw N findings)'; legend.appendChild(leadLegend);
          }
          if (toolCalls.length) { var tool = document.createElement('span'); tool.innerHTML = '<i style="background:#555"></i>tool call'; legend.appendChild(tool); }
          if (Object.keys(verdictsByStep).length) {
            var verdictLegend = document.createElement('span');
            verdictLegend.innerHTML = '<i style="background:#c00"></i>guard denied <i style="background:#e6a700"></i>redacted <i style="background:#7a00cc"></i>boundary';
            legend.appendChild(verdictLegend);
          }
          Object.keys(models).forEach(function (m) {
            var item = document.createElement('span'); var swatch = document.createElement('i'); swatch.style.background = models[m];
            item.appendChild(swatch); item.appendChild(document.createTextNode('call on ' + m)); legend.appendChild(item);
          });
          document.body.setAttribute('data-steps', String(steps.length));
          document.body.setAttribute('data-ready', '1');
        })();
        </script>
        </body></html>
        """#
}
