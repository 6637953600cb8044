import Foundation
import IoMTTestSupport
import Testing

/// The repository root and the agent binary (IoMTTestSupport.TestPaths).
let repoRoot = TestPaths.repositoryRoot
let agentBinary = TestPaths.agentBinary

/// The absolute path of `tool` on the PATH (or in /usr/sbin, /sbin), if installed.
func which(_ tool: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let candidate = "\(dir)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Runs a command (bounded), returning its status and merged output.
@discardableResult
func sh(_ arguments: [String], timeout: Duration = .seconds(120)) async throws -> (status: Int32, output: String) {
    try await ChildProcess.run(arguments, timeout: timeout)
}

/// Permission bits, owner and group of a file (lstat), or nil if it does not exist.
func fileMode(_ path: String) -> (mode: Int, uid: UInt32, gid: UInt32, isDirectory: Bool)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return (Int(st.st_mode & 0o7777), st.st_uid, st.st_gid, (st.st_mode & S_IFMT) == S_IFDIR)
}

func readText(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

/// A systemd unit file as ordered (section, key, value) entries (comments and blank lines
/// dropped, backslash continuations joined).
struct UnitFile {
    var entries: [(section: String, key: String, value: String)] = []

    init(text: String) {
        var section = ""
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = pending + raw.trimmingCharacters(in: .whitespaces)
            pending = ""
            if line.hasSuffix("\\") { line.removeLast(); pending = line + " "; continue }
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") { section = String(line.dropFirst().dropLast()); continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            entries.append((section, line[..<eq].trimmingCharacters(in: .whitespaces),
                            line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)))
        }
    }

    func values(_ section: String, _ key: String) -> [String] {
        entries.filter { $0.section == section && $0.key == key }.map(\.value)
    }
    func value(_ section: String, _ key: String) -> String? { values(section, key).last }
}
