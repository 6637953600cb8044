@testable import IoMTControl
import IoMTRegistry
import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ControlProtocolCodecTests {
    func decode(_ s: String) -> Result<ClientMessage, ClientMessage.DecodeFailure> {
        ClientMessage.decode(Array(s.utf8))
    }

    @Test func aRequestRoundTripsThroughItsLine() throws {
        let m = ClientMessage.request(id: 7, cmd: "assign", args: .obj(["device": .string("ox-1"), "patient": .string("P-2")]))
        var line = m.line
        #expect(line.last == 0x0A)
        line.removeLast()
        #expect(try decode(String(decoding: line, as: UTF8.self)).get() == m)
    }

    @Test func anInputRoundTrips() throws {
        let m = ClientMessage.input(id: 3, value: .string("123456"))
        #expect(try ClientMessage.decode(Array(m.line.dropLast())).get() == m)
    }

    @Test func everyServerMessageRoundTrips() throws {
        let messages: [ServerMessage] = [
            .result(id: 1, .obj(["ok": .bool(true)])),
            .failure(id: 2, ControlError(.refused, "3 readings still buffered")),
            .failure(id: nil, ControlError(.unsupportedVersion, "no", supported: [1])),
            .event(id: 4, .obj(["address": .string("C0:FF:EE:00:00:01")])),
            .prompt(id: 5, .init(kind: "passkey", text: "Enter the passkey")),
        ]
        for m in messages {
            #expect(try ServerMessage.decode(Array(m.line.dropLast())) == m)
        }
    }

    @Test func malformedLinesGetBadRequestNamingTheProblem() {
        for (line, needle) in [("not json", "not a JSON line"), ("[1,2]", "must be a JSON object"),
                               (#"{"id":1,"cmd":"status"}"#, "field v"), (#"{"v":1,"cmd":"status"}"#, "field id"),
                               (#"{"v":1,"id":1}"#, "field cmd"), (#"{"v":1,"id":1,"cmd":"x","args":[]}"#, "args must be an object"),
                               (#"{"v":1,"id":1,"cmd":"x",}"#, "not a JSON line")] {
            guard case .failure(let f) = decode(line) else {
                Issue.record("\(line) was accepted")
                continue
            }
            #expect(f.error.code == .badRequest, "\(line)")
            #expect(f.error.message.contains(needle), "\(line): \(f.error.message)")
        }
    }

    @Test func anUnknownVersionIsRefusedNamingTheSupportedOnesAndKeepingTheID() {
        guard case .failure(let f) = decode(#"{"v":2,"id":9,"cmd":"status"}"#) else {
            Issue.record("version 2 accepted")
            return
        }
        #expect(f.id == 9)
        #expect(f.error.code == .unsupportedVersion)
        #expect(f.error.supported == [1])
        #expect(f.error.message.contains("version 2") && f.error.message.contains("speaks version 1"))
    }

    @Test func deepNestingIsRefusedWithoutRecursingWithoutBound() {
        let deep = #"{"v":1,"id":1,"cmd":"x","args":{"a":"# + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "}}"
        guard case .failure(let f) = decode(deep) else {
            Issue.record("accepted")
            return
        }
        #expect(f.error.message.contains("nested deeper"))
    }
}

@Suite struct LineFramerTests {
    @Test func linesSplitAcrossReadsAreReassembledByteAtATime() {
        var f = LineFramer(maxLength: 100)
        var out: [LineFramer.Item] = []
        for b in Array("ab\ncd\r\n\n".utf8) { out += f.feed([b]) }
        #expect(out == [.line(Array("ab".utf8)), .line(Array("cd".utf8)), .line([])])
        #expect(f.remainder == nil)
    }

    @Test func anOverlongLineIsReportedOnceAndTheNextLineSurvives() {
        var f = LineFramer(maxLength: 8)
        let out = f.feed(Array("0123456789abcdef\nok\n".utf8))
        #expect(out == [.tooLong(length: 16), .line(Array("ok".utf8))])
    }

    @Test func anOverlongLineFedInPiecesCostsNoMoreThanTheBound() {
        var f = LineFramer(maxLength: 4)
        var out: [LineFramer.Item] = []
        for _ in 0..<1000 { out += f.feed(Array("xxxxxxxx".utf8)) }
        #expect(out.isEmpty)
        #expect(f.remainder == nil) // nothing kept while discarding
        out += f.feed([0x0A])
        #expect(out == [.tooLong(length: 8000)])
    }

    @Test func anUnfinishedLineIsTheRemainder() {
        var f = LineFramer(maxLength: 8)
        #expect(f.feed(Array("abc".utf8)).isEmpty)
        #expect(f.remainder == Array("abc".utf8))
    }
}

@Suite struct PeerCredentialTests {
    @Test func supplementaryGroupsAreReadFromTheGroupsLine() {
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 996 \nNgid:\t0\n"
        #expect(PeerCredentials.groups(fromProcStatus: status) == [4, 24, 27, 996])
        #expect(PeerCredentials.groups(fromProcStatus: "Groups:\n").isEmpty)
        #expect(PeerCredentials.groups(fromProcStatus: "Name: x\n").isEmpty)
    }
}

@Suite struct TextRenderingTests {
    @Test func tableColumnsAlign() {
        let t = TextRendering.table(["A", "BB"], [["long", "x"], ["s", "yy"]])
        #expect(t == "A     BB\nlong  x\ns     yy")
    }

    @Test func liveScanRowsLineUpUnderTheHeaderAndLongCellsAreCut() {
        let header = TextRendering.scanLine(TextRendering.scanHeaders)
        let row = TextRendering.scanLine(TextRendering.scanCells(ScanRow(
            address: "C0:FF:EE:00:00:01", addressType: "random", name: "A very long advertised device name", rssi: -61,
            services: ["0x1822"], profile: "pulse-oximeter", paired: true)))
        func column(_ line: String, _ text: String) -> Int? {
            let chars = Array(line)
            let needle = Array(text)
            return (0...(chars.count - needle.count)).first { Array(chars[$0..<$0 + needle.count]) == needle }
        }
        #expect(column(header, "RSSI") != nil)
        #expect(column(header, "RSSI") == column(row, "-61"))
        #expect(column(header, "PAIRED") == column(row, "yes"))
        #expect(row.contains("A very long adverti…"))
        #expect(row.hasSuffix("yes"))
    }

    @Test func devicesWithNoneSaysHowToPair() {
        #expect(TextRendering.devices(.obj(["devices": .array([])])).contains("iomt-agent pair"))
    }
}

struct NoHandler: ControlHandler {
    func handle(_ request: ControlRequest, session: ControlSession) async throws -> JSONValue { .null }
}

@Suite struct PeerAuthorizationTests {
    let logger = Logger(label: "t")

    @Test func rootTheAgentsUserAndMembersOfTheGroupAreAllowedOthersNot() {
        // Group "root" (gid 0) exists on every Linux system.
        let server = ControlServer(path: "/tmp/unused.sock", group: "root", handler: NoHandler(), logger: logger)
        let nobodyPid: Int32 = 0x7FFF_FFF0 // no such process: no supplementary groups readable
        #expect(server.isAllowed(PeerCredentials(pid: nobodyPid, uid: 0, gid: 65534)))
        #expect(server.isAllowed(PeerCredentials(pid: nobodyPid, uid: geteuid(), gid: 65534)))
        #expect(server.isAllowed(PeerCredentials(pid: nobodyPid, uid: 65534, gid: 0)), "primary group")
        #expect(!server.isAllowed(PeerCredentials(pid: nobodyPid, uid: 65534, gid: 65534)))
    }

    @Test func withoutTheGroupOnlyRootAndTheAgentsUser() {
        let server = ControlServer(path: "/tmp/unused.sock", group: "no-such-group-iomt-test", handler: NoHandler(), logger: logger)
        #expect(server.isAllowed(PeerCredentials(pid: 1, uid: 0, gid: 0)))
        #expect(!server.isAllowed(PeerCredentials(pid: 1, uid: 65534, gid: 0)))
    }
}
