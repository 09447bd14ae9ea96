import ChorusJSON

/// What a tool file's `arguments` and `defaults` do to an MCP server's tools: the schema the
/// model is offered, and the input the server is sent.
///
/// A fixed argument (`"arguments": {"repo_path": "."}`) is the file's, not the model's: it
/// leaves the offered schema and is written over whatever the model sent, so a model can
/// neither see nor steer it (mcp-server-git's `repo_path` is the example). A tool whose
/// schema lists its properties without that name never gets it, and a value the model sent
/// for it is dropped; one whose schema lists none (a `$ref`, an open object) gets it too,
/// as the model's value could not otherwise be kept out. A default (`"defaults":
/// {"revision": "HEAD"}`) is offered as its property's `default`, no longer required, and
/// sent when the model leaves it out or sends null; it touches only the tools whose schema
/// has the property.
enum MCPArguments {
    /// `schema` (the server's) as the model is offered it.
    static func offered(_ schema: JSONValue, fixed: [String: JSONValue], defaults: [String: JSONValue]) -> JSONValue {
        guard var object = schema.objectValue, var properties = object["properties"]?.objectValue else { return schema }
        var required = object["required"]?.arrayValue ?? []
        for name in fixed.keys where properties[name] != nil {
            properties[name] = nil
            required.removeAll { $0.stringValue == name }
        }
        for (name, value) in defaults {
            guard var property = properties[name]?.objectValue else { continue }
            property["default"] = value
            properties[name] = .object(property)
            required.removeAll { $0.stringValue == name }
        }
        object["properties"] = .object(properties)
        if object["required"] != nil { object["required"] = .array(required) }
        return .object(object)
    }

    /// The input the server is sent for the model's `input` to a tool whose schema (the
    /// server's) is `schema`: defaults for what it left out, fixed arguments over what it sent.
    /// Input that is not an object is passed on as it is, for the call to refuse.
    static func sent(_ input: JSONValue, schema: JSONValue?, fixed: [String: JSONValue], defaults: [String: JSONValue]) -> JSONValue {
        guard !fixed.isEmpty || !defaults.isEmpty, var object = input.objectValue else { return input }
        let properties = schema?["properties"]?.objectValue
        for (name, value) in defaults where properties?[name] != nil && (object[name] ?? .null) == .null { object[name] = value }
        for (name, value) in fixed {
            if properties == nil || properties?[name] != nil { object[name] = value } else { object.removeValue(forKey: name) }
        }
        return .object(object)
    }

    /// The first name of `fixed` or `defaults` that none of `schemas` has: a typo in the tool
    /// file, which would otherwise be silently ignored.
    static func unused(fixed: [String: JSONValue], defaults: [String: JSONValue], in schemas: [JSONValue]) -> (key: String, name: String)? {
        // A tool whose schema lists no properties may take any name.
        guard schemas.allSatisfy({ $0["properties"]?.objectValue != nil }) else { return nil }
        let taken = Set(schemas.flatMap { $0["properties"]?.objectValue?.keys.map { $0 } ?? [] })
        if let name = fixed.keys.sorted().first(where: { !taken.contains($0) }) { return ("arguments", name) }
        if let name = defaults.keys.sorted().first(where: { !taken.contains($0) }) { return ("defaults", name) }
        return nil
    }
}
