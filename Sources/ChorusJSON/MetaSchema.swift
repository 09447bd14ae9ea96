// JSON Schema 2020-12's meta-schema, flattened (scripts/metaschema/flatten.py), embedded so
// the binary checks schemas without the repository's files. SchemaCheckerTests checks it
// equals schemas/json-schema-2020-12.json, and that file against the published one.

/// The meta-schema user schemas are validated against (`SchemaChecker`).
package enum MetaSchema {
    /// The document as JSON.
    package static let value: JSONValue = (try? JSONValue(parsing: Array(text.utf8))) ?? .bool(true)

    /// The document's text.
    package static let text = #"""
        {
         "$comment": "This meta-schema also defines keywords that have appeared in previous drafts in order to prevent incompatible extensions as they remain in common use.",
         "$defs": {
          "applicator": {
           "$defs": {
            "schemaArray": {
             "items": {
              "$ref": "#"
             },
             "minItems": 1,
             "type": "array"
            }
           },
           "properties": {
            "additionalProperties": {
             "$ref": "#"
            },
            "allOf": {
             "$ref": "#/$defs/applicator/$defs/schemaArray"
            },
            "anyOf": {
             "$ref": "#/$defs/applicator/$defs/schemaArray"
            },
            "contains": {
             "$ref": "#"
            },
            "dependentSchemas": {
             "additionalProperties": {
              "$ref": "#"
             },
             "default": {},
             "type": "object"
            },
            "else": {
             "$ref": "#"
            },
            "if": {
             "$ref": "#"
            },
            "items": {
             "$ref": "#"
            },
            "not": {
             "$ref": "#"
            },
            "oneOf": {
             "$ref": "#/$defs/applicator/$defs/schemaArray"
            },
            "patternProperties": {
             "additionalProperties": {
              "$ref": "#"
             },
             "default": {},
             "propertyNames": {
              "format": "regex"
             },
             "type": "object"
            },
            "prefixItems": {
             "$ref": "#/$defs/applicator/$defs/schemaArray"
            },
            "properties": {
             "additionalProperties": {
              "$ref": "#"
             },
             "default": {},
             "type": "object"
            },
            "propertyNames": {
             "$ref": "#"
            },
            "then": {
             "$ref": "#"
            }
           },
           "title": "Applicator vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          },
          "content": {
           "properties": {
            "contentEncoding": {
             "type": "string"
            },
            "contentMediaType": {
             "type": "string"
            },
            "contentSchema": {
             "$ref": "#"
            }
           },
           "title": "Content vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          },
          "core": {
           "$defs": {
            "anchorString": {
             "pattern": "^[A-Za-z_][-A-Za-z0-9._]*$",
             "type": "string"
            },
            "uriReferenceString": {
             "format": "uri-reference",
             "type": "string"
            },
            "uriString": {
             "format": "uri",
             "type": "string"
            }
           },
           "properties": {
            "$anchor": {
             "$ref": "#/$defs/core/$defs/anchorString"
            },
            "$comment": {
             "type": "string"
            },
            "$defs": {
             "additionalProperties": {
              "$ref": "#"
             },
             "type": "object"
            },
            "$dynamicAnchor": {
             "$ref": "#/$defs/core/$defs/anchorString"
            },
            "$dynamicRef": {
             "$ref": "#/$defs/core/$defs/uriReferenceString"
            },
            "$id": {
             "$comment": "Non-empty fragments not allowed.",
             "$ref": "#/$defs/core/$defs/uriReferenceString",
             "pattern": "^[^#]*#?$"
            },
            "$ref": {
             "$ref": "#/$defs/core/$defs/uriReferenceString"
            },
            "$schema": {
             "$ref": "#/$defs/core/$defs/uriString"
            },
            "$vocabulary": {
             "additionalProperties": {
              "type": "boolean"
             },
             "propertyNames": {
              "$ref": "#/$defs/core/$defs/uriString"
             },
             "type": "object"
            }
           },
           "title": "Core vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          },
          "format-annotation": {
           "properties": {
            "format": {
             "type": "string"
            }
           },
           "title": "Format vocabulary meta-schema for annotation results",
           "type": [
            "object",
            "boolean"
           ]
          },
          "meta-data": {
           "properties": {
            "default": true,
            "deprecated": {
             "default": false,
             "type": "boolean"
            },
            "description": {
             "type": "string"
            },
            "examples": {
             "items": true,
             "type": "array"
            },
            "readOnly": {
             "default": false,
             "type": "boolean"
            },
            "title": {
             "type": "string"
            },
            "writeOnly": {
             "default": false,
             "type": "boolean"
            }
           },
           "title": "Meta-data vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          },
          "unevaluated": {
           "properties": {
            "unevaluatedItems": {
             "$ref": "#"
            },
            "unevaluatedProperties": {
             "$ref": "#"
            }
           },
           "title": "Unevaluated applicator vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          },
          "validation": {
           "$defs": {
            "nonNegativeInteger": {
             "minimum": 0,
             "type": "integer"
            },
            "nonNegativeIntegerDefault0": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger",
             "default": 0
            },
            "simpleTypes": {
             "enum": [
              "array",
              "boolean",
              "integer",
              "null",
              "number",
              "object",
              "string"
             ]
            },
            "stringArray": {
             "default": [],
             "items": {
              "type": "string"
             },
             "type": "array",
             "uniqueItems": true
            }
           },
           "properties": {
            "const": true,
            "dependentRequired": {
             "additionalProperties": {
              "$ref": "#/$defs/validation/$defs/stringArray"
             },
             "type": "object"
            },
            "enum": {
             "items": true,
             "type": "array"
            },
            "exclusiveMaximum": {
             "type": "number"
            },
            "exclusiveMinimum": {
             "type": "number"
            },
            "maxContains": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger"
            },
            "maxItems": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger"
            },
            "maxLength": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger"
            },
            "maxProperties": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger"
            },
            "maximum": {
             "type": "number"
            },
            "minContains": {
             "$ref": "#/$defs/validation/$defs/nonNegativeInteger",
             "default": 1
            },
            "minItems": {
             "$ref": "#/$defs/validation/$defs/nonNegativeIntegerDefault0"
            },
            "minLength": {
             "$ref": "#/$defs/validation/$defs/nonNegativeIntegerDefault0"
            },
            "minProperties": {
             "$ref": "#/$defs/validation/$defs/nonNegativeIntegerDefault0"
            },
            "minimum": {
             "type": "number"
            },
            "multipleOf": {
             "exclusiveMinimum": 0,
             "type": "number"
            },
            "pattern": {
             "format": "regex",
             "type": "string"
            },
            "required": {
             "$ref": "#/$defs/validation/$defs/stringArray"
            },
            "type": {
             "anyOf": [
              {
               "$ref": "#/$defs/validation/$defs/simpleTypes"
              },
              {
               "items": {
                "$ref": "#/$defs/validation/$defs/simpleTypes"
               },
               "minItems": 1,
               "type": "array",
               "uniqueItems": true
              }
             ]
            },
            "uniqueItems": {
             "default": false,
             "type": "boolean"
            }
           },
           "title": "Validation vocabulary meta-schema",
           "type": [
            "object",
            "boolean"
           ]
          }
         },
         "allOf": [
          {
           "$ref": "#/$defs/core"
          },
          {
           "$ref": "#/$defs/applicator"
          },
          {
           "$ref": "#/$defs/unevaluated"
          },
          {
           "$ref": "#/$defs/validation"
          },
          {
           "$ref": "#/$defs/meta-data"
          },
          {
           "$ref": "#/$defs/format-annotation"
          },
          {
           "$ref": "#/$defs/content"
          }
         ],
         "properties": {
          "$recursiveAnchor": {
           "$comment": "\"$recursiveAnchor\" has been replaced by \"$dynamicAnchor\".",
           "$ref": "#/$defs/core/$defs/anchorString",
           "deprecated": true
          },
          "$recursiveRef": {
           "$comment": "\"$recursiveRef\" has been replaced by \"$dynamicRef\".",
           "$ref": "#/$defs/core/$defs/uriReferenceString",
           "deprecated": true
          },
          "definitions": {
           "$comment": "\"definitions\" has been replaced by \"$defs\".",
           "additionalProperties": {
            "$ref": "#"
           },
           "default": {},
           "deprecated": true,
           "type": "object"
          },
          "dependencies": {
           "$comment": "\"dependencies\" has been split and replaced by \"dependentSchemas\" and \"dependentRequired\" in order to serve their differing semantics.",
           "additionalProperties": {
            "anyOf": [
             {
              "$ref": "#"
             },
             {
              "$ref": "#/$defs/validation/$defs/stringArray"
             }
            ]
           },
           "default": {},
           "deprecated": true,
           "type": "object"
          }
         },
         "title": "Core and Validation specifications meta-schema",
         "type": [
          "object",
          "boolean"
         ]
        }
        """#
}
