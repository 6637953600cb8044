#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension AgentConfig {
    /// The largest configuration file accepted (1 MiB).
    public static let maximumFileSize = 1 << 20

    /// Reads and parses a configuration file; problems are reported against `path`.
    ///
    /// - Throws: ``ConfigErrors``: the file cannot be read, is not UTF-8, is too large, or
    ///   any problem ``parse(yaml:source:)`` finds.
    public static func load(path: String) throws(ConfigErrors) -> AgentConfig {
        let text: String
        switch readTextFile(path) {
        case .success(let t): text = t
        case .failure(let message):
            throw ConfigErrors([ConfigProblem(source: path, line: nil, keyPath: "", message: message.text)])
        }
        var config = try parse(yaml: text, source: path)
        // Line profile files named by serial entries: loaded now, so `config check` reports them.
        var problems: [ConfigProblem] = []
        for (i, entry) in config.serial.enumerated() {
            guard let file = entry.lineProfile else { continue }
            do {
                config.serial[i].lineProfileDocument = try LineProfileDocument.load(path: file)
            } catch {
                problems += error.problems
            }
        }
        // Advertisement profile files named by broadcasters: likewise.
        for (i, entry) in (config.bluetooth?.broadcasters ?? []).enumerated() {
            do {
                config.bluetooth?.broadcasters[i].profileDocument = try AdvertisementProfileDocument.load(path: entry.profile)
            } catch {
                problems += error.problems
            }
        }
        if !problems.isEmpty { throw ConfigErrors(problems) }
        return config
    }
}

struct FileReadMessage: Error { var text: String }

/// The whole file as UTF-8 text.
func readTextFile(_ path: String) -> Result<String, FileReadMessage> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(.init(text: "cannot open the file: \(errnoText())")) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(.init(text: "cannot read the file: \(errnoText())"))
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        if bytes.count > AgentConfig.maximumFileSize {
            return .failure(.init(text: "the file is larger than \(AgentConfig.maximumFileSize) bytes"))
        }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        return .failure(.init(text: "the file is not valid UTF-8 text"))
    }
    return .success(text)
}

private func errnoText() -> String {
    let code = errno
    guard let s = strerror(code) else { return "error \(code)" }
    return String(cString: s)
}
