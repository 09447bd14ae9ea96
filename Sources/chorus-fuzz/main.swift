// chorus-fuzz: a seeded mutation fuzzer over Chorus's parsers and checkers (FuzzTargets).
//
// Hand-written rather than libFuzzer: `-sanitize=fuzzer` needs a toolchain build with the
// fuzzer runtime and a separate build of every dependency; this driver runs in the normal
// debug build (300-500 inputs a second per target here, 2 cores). It mutates seeds
// (byte flips, splices, repeats, JSON-aware insertions: deep nesting, huge numbers, many
// tags), writes each input to OUT/current before running it, so a crash leaves it behind,
// and a watchdog aborts an input that runs over 2 s, leaving it as a hang.
//
// Usage: chorus-fuzz TARGET CORPUS_DIR OUT_DIR SECONDS [SEED]
import Chorus
import Foundation
import Glibc

let arguments = CommandLine.arguments
guard arguments.count >= 5, FuzzTargets.names.contains(arguments[1]), let seconds = Double(arguments[4]) else {
    FileHandle.standardError.write(Data("usage: chorus-fuzz TARGET(\(FuzzTargets.names.joined(separator: "|"))) CORPUS_DIR OUT_DIR SECONDS [SEED]\n".utf8))
    exit(2)
}
let target = arguments[1], corpusDirectory = arguments[2], outDirectory = arguments[3]
var rng = SystemRandomNumberGenerator()
var seed = arguments.count > 5 ? UInt64(arguments[5]) ?? 1 : UInt64.random(in: 1...UInt64.max, using: &rng)
@MainActor func next() -> UInt64 {  // SplitMix64: a run is reproducible from its seed
    seed &+= 0x9E37_79B9_7F4A_7C15
    var z = seed
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
@MainActor func pick(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

try? FileManager.default.createDirectory(atPath: outDirectory, withIntermediateDirectories: true)
let scratch = outDirectory + "/scratch"
try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
let names = (try? FileManager.default.contentsOfDirectory(atPath: corpusDirectory)) ?? []
var corpus = names.sorted().compactMap { FileManager.default.contents(atPath: corpusDirectory + "/" + $0).map { Array($0) } }
if corpus.isEmpty { corpus = [Array("{}".utf8)] }

let tokens: [[UInt8]] = [
    "{", "}", "[", "]", "\"", ":", ",", "1e16", "-1e308", "1e400", "NaN", "0.0000001", "9007199254740993",
    "{{#a}}", "{{/a}}", "{{a}}", "{{{a}}}", "{{>p}}", "{{=<% %>=}}", "\\u0000", "\\ud800", "null", "true",
    "\"timeout_s\": 1e16", "\"max_tokens\": 1e300", "data: ", "\n\n", "event: error\n", "[DONE]", "\u{FEFF}", "\r\n",
]
.map { Array($0.utf8) }

@MainActor func mutate(_ input: [UInt8]) -> [UInt8] {
    var bytes = input
    for _ in 0..<(1 + pick(4)) {
        switch pick(8) {
        case 0 where !bytes.isEmpty: bytes[pick(bytes.count)] ^= UInt8(1 << pick(8))
        case 1: bytes.insert(contentsOf: tokens[pick(tokens.count)], at: pick(bytes.count + 1))
        case 2 where bytes.count > 1:
            let start = pick(bytes.count), length = pick(min(64, bytes.count - start) + 1)
            bytes.removeSubrange(start..<(start + length))
        case 3:  // splice another seed in
            let other = corpus[pick(corpus.count)]
            if !other.isEmpty {
                let start = pick(other.count); bytes.insert(contentsOf: other[start..<min(other.count, start + 1 + pick(256))], at: pick(bytes.count + 1))
            }
        case 4:  // repeat a token many times: deep nesting, many tags
            let token = tokens[pick(4) == 0 ? pick(tokens.count) : [0, 2, 13, 15][pick(4)]]
            let count = [10, 100, 1000, 10_000][pick(4)]
            bytes.insert(contentsOf: Array([[UInt8]](repeating: token, count: count).joined()), at: pick(bytes.count + 1))
        case 5 where !bytes.isEmpty:  // a digit run into a huge number
            bytes.insert(contentsOf: Array(repeating: UInt8(ascii: "9"), count: 1 + pick(400)), at: pick(bytes.count + 1))
        case 6 where bytes.count > 8: bytes = Array(bytes.prefix(pick(bytes.count)))
        default: bytes.append(UInt8(truncatingIfNeeded: next()))
        }
    }
    return bytes.count > 1_000_000 ? Array(bytes.prefix(1_000_000)) : bytes
}

// The watchdog: the main loop bumps `progress`; if it stalls for 2 s, the input is a hang.
nonisolated(unsafe) var progress = 0
let current = outDirectory + "/current"
let hangPath = outDirectory + "/hang-\(Int(Date().timeIntervalSince1970))", hangFlag = outDirectory + "/HANG"
Thread.detachNewThread { [current, hangPath, hangFlag] in
    var last = -1
    while true {
        sleep(2)
        if progress == last {
            try? FileManager.default.moveItem(atPath: current, toPath: hangPath)
            _ = FileManager.default.createFile(atPath: hangFlag, contents: nil)
            abort()
        }
        last = progress
    }
}

let deadline = Date().addingTimeInterval(seconds)
var executions = 0
var verdicts: [String: Int] = [:]
while Date() < deadline {
    let input = pick(10) == 0 ? corpus[pick(corpus.count)] : mutate(corpus[pick(corpus.count)])
    _ = FileManager.default.createFile(atPath: current, contents: Data(input))
    verdicts[FuzzTargets.run(target, input, scratch: scratch), default: 0] += 1
    executions += 1
    progress = executions
    // Keep some mutants as seeds, so mutations compound.
    if pick(200) == 0 && corpus.count < 5_000 { corpus.append(input) }
}
try? FileManager.default.removeItem(atPath: current)
let summary = verdicts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
print("\(target): \(executions) executions in \(Int(seconds)) s, no crash, no hang (\(summary))")
