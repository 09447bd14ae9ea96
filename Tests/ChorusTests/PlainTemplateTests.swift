@testable import Chorus
import ChorusJSON
import Testing

/// The plain-template fast path against swift-mustache, the renderer of record: wherever
/// the fast path answers, its text must be Mustache's, byte for byte.
@Suite struct PlainTemplateTests {
    private let variables: [String: JSONValue] = [
        "item": "Subtask 7: what limits fan-out? <b>&amp;</b> {{not a tag}}",
        "index": 7,
        "ratio": 0.25,
        "big": 1e17,
        "negative": -3,
        "flag": true,
        "nothing": .null,
        "list": ["a", "b"],
        "inputs": ["question": "Why?", "depth": 2, "nested": ["deep": "down"]],
        "unicode": "naïve — 日本語 🎉",
        "empty": "",
    ]

    private let templates = [
        "{{item}}", "{{ item }}", "{{{item}}}", "{{& item}}", "{{&item}}", "Q: {{inputs.question}} at depth {{inputs.depth}}",
        "{{inputs.nested.deep}}", "{{index}}/{{ratio}}/{{big}}/{{negative}}", "{{unicode}}!", "[{{empty}}]",
        "no tags at all", "", "{{flag}}", "{{nothing}}", "{{list}}", "{{missing}}", "{{inputs.missing}}", "{{item.length}}",
        "{{#list}}- {{.}}\n{{/list}}", "{{^missing}}none{{/missing}}", "{{! a comment }}{{item}}", "{{> partial}}",
        "{{=<% %>=}}<% item %>", "{{inputs.}}", "{{.}}", "{{ uppercased(item) }}", "trailing {{item}} text {{index}}",
        "{{item}}{{item}}", "line\n  {{item}}\n",
    ]

    @Test func agreesWithMustacheWhereverItAnswers() throws {
        var answered = 0
        for template in templates {
            guard let mustache = try? TemplateContext.renderWithMustache(template, variables) else { continue }
            let plain = PlainTemplate(template)?.render(variables)
            if let plain {
                answered += 1
                #expect(plain == mustache, "template \(template.debugDescription)")
            }
            #expect(try TemplateContext.render(template, variables) == mustache, "template \(template.debugDescription)")
        }
        // The fast path must actually take the common shapes.
        #expect(answered >= 12)
    }

    @Test func leavesEverythingButPlainVariablesToMustache() {
        for template in [
            "{{#list}}{{.}}{{/list}}", "{{^x}}y{{/x}}", "{{! c }}", "{{> p}}", "{{=<% %>=}}", "{{a b}}", "{{.}}", "{{a..b}}", "{{ f(x) }}", "{{item",
        ] {
            #expect(PlainTemplate(template) == nil, "template \(template.debugDescription)")
        }
        let plain = PlainTemplate("{{flag}} {{nothing}} {{list}} {{missing}} {{item.length}}")
        #expect(plain != nil)
        for name in ["flag", "nothing", "list", "missing", "item.length"] {
            #expect(PlainTemplate("{{\(name)}}")?.render(variables) == nil, "\(name) must go to Mustache")
        }
    }
}
