import Foundation
import IoMTTestSupport
import Testing

/// The repository root, from this file's path (Tests/IoMTDeployTests/Support.swift).
let repoRoot: String = {
    if let root = ProcessInfo.processInfo.environment["IOMT_REPO_ROOT"] { return root }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}()
