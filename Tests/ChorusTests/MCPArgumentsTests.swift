@testable import Chorus
import ChorusJSON
import Testing

/// A tool file's fixed and default MCP arguments, without a server: what the model is
/// offered, and what the server is sent whatever the model tries.
@Suite struct MCPArgumentsTests {
    /// mcp-server-git's git_show, as the server lists it.
    let show: JSONValue = [
        "type": "object", "required": ["repo_path", "revision"],
        "properties": ["repo_path": ["type": "string"], "revision": ["type": "string"]],
    ]
    let fixed: [String: JSONValue] = ["repo_path": "."]
    let defaults: [String: JSONValue] = ["revision": "HEAD"]

    @Test func theModelIsOfferedNoFixedArgumentAndADefaultItMayLeaveOut() {
        let offered = MCPArguments.offered(show, fixed: fixed, defaults: defaults)
        #expect(offered["properties"]?["repo_path"] == nil)
        #expect(offered["properties"]?["revision"] == ["type": "string", "default": "HEAD"])
        #expect(offered["required"] == [])
    }

    @Test func aFixedArgumentIsWrittenOverWhatTheModelSentAndADefaultFillsWhatItLeftOut() {
        let steering: JSONValue = ["repo_path": "/etc", "revision": "v1"]
        #expect(MCPArguments.sent(steering, schema: show, fixed: fixed, defaults: defaults) == ["repo_path": ".", "revision": "v1"])
        #expect(MCPArguments.sent([:], schema: show, fixed: fixed, defaults: defaults) == ["repo_path": ".", "revision": "HEAD"])
        #expect(MCPArguments.sent(["revision": nil], schema: show, fixed: fixed, defaults: defaults) == ["repo_path": ".", "revision": "HEAD"])
    }

    /// A tool that lists its properties without the fixed name never gets it, nor the
    /// model's value for it; one that lists none gets the fixed value, never the model's.
    @Test func theModelCannotSteerAFixedNameThroughAToolThatDoesNotListIt() {
        let log: JSONValue = ["type": "object", "properties": ["max_count": ["type": "integer"]]]
        #expect(MCPArguments.sent(["repo_path": "/etc", "max_count": 3], schema: log, fixed: fixed, defaults: defaults) == ["max_count": 3])
        let open: JSONValue = ["$ref": "#/$defs/anything"]
        #expect(MCPArguments.sent(["repo_path": "/etc"], schema: open, fixed: fixed, defaults: defaults) == ["repo_path": "."])
        #expect(MCPArguments.sent(["repo_path": "/etc"], schema: nil, fixed: fixed, defaults: defaults) == ["repo_path": "."])
        #expect(MCPArguments.offered(open, fixed: fixed, defaults: defaults) == open, "nothing to hide in a schema with no properties")
    }

    @Test func aNameNoOfferedToolTakesIsReportedUnlessAToolTakesAnyName() {
        #expect(MCPArguments.unused(fixed: ["repo_pth": "."], defaults: [:], in: [show])! == ("arguments", "repo_pth"))
        #expect(MCPArguments.unused(fixed: fixed, defaults: ["revison": "HEAD"], in: [show])! == ("defaults", "revison"))
        #expect(MCPArguments.unused(fixed: fixed, defaults: defaults, in: [show]) == nil)
        #expect(MCPArguments.unused(fixed: ["repo_pth": "."], defaults: [:], in: [show, ["type": "object"]]) == nil)
    }

    @Test func inputThatIsNotAnObjectIsPassedOnForTheCallToRefuse() {
        #expect(MCPArguments.sent("text", schema: show, fixed: fixed, defaults: defaults) == "text")
    }
}
