/// The buffer's message rows of the database at `path` as one table expression for the
/// `sqlite3` command line (`SELECT count(*) FROM <this>`): schema v3 keeps them in segment
/// tables (`messages_<n>`, and a v2 file's `messages` until it is empty), so a test that reads
/// the file from outside names all of them. Every table must have the same columns (true for
/// files this agent wrote). With no message table at all: an empty set with the usual columns.
public func bufferMessagesTable(_ path: String) throws -> String {
    let list = try ChildProcess.runBlocking([
        "sqlite3", path,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND (name = 'messages' OR name GLOB 'messages_[0-9]*') ORDER BY length(name), name;",
    ])
    guard list.status == 0 else { throw TestSupportError("listing the message tables of \(path): \(list.output)") }
    let tables = list.output.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    guard !tables.isEmpty else {
        return "(SELECT NULL AS row_id, NULL AS kind, NULL AS device_id, NULL AS sequence, NULL AS payload, NULL AS sealed WHERE 0)"
    }
    return "(" + tables.map { "SELECT * FROM \($0)" }.joined(separator: " UNION ALL ") + ")"
}
