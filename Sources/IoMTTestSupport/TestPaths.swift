#if canImport(Glibc)
import Glibc
#endif

/// Where tests find the repository and the agent binary they run as a child process.
public enum TestPaths {
    /// The repository root: `IOMT_REPO_ROOT` if set, else derived from this file's path
    /// (Sources/IoMTTestSupport/TestPaths.swift).
    public static let repositoryRoot: String = {
        if let v = getenv("IOMT_REPO_ROOT") { return String(cString: v) }
        return "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
    }()

    /// The debug `iomt-agent` built next to the test bundle (`swift build --build-tests` builds it).
    public static let agentBinary: String = {
        let bundleDir = CommandLine.arguments[0].split(separator: "/", omittingEmptySubsequences: false).dropLast()
            .joined(separator: "/")
        let parent = bundleDir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        for candidate in [bundleDir + "/iomt-agent", parent + "/iomt-agent", repositoryRoot + "/.build/debug/iomt-agent"]
        where access(candidate, X_OK) == 0 {
            return candidate
        }
        return repositoryRoot + "/.build/debug/iomt-agent"
    }()
}
