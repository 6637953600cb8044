@testable import IoMTSMP
import Testing

/// Core v5.4 Vol 3 Part H 2.3.5.1 Table 2.8 (rows: initiator, columns: responder in the order
/// DisplayOnly, DisplayYesNo, KeyboardOnly, NoInputNoOutput, KeyboardDisplay), cross-checked with
/// google/bumble bumble/smp.py `PAIRING_METHODS`.
/// "JW" Just Works, "NC" numeric comparison, "PI" passkey with the initiator displaying,
/// "PR" passkey with the initiator typing (responder displays or both type).
@Suite struct PairingMethodTableTests {
    static let caps: [IOCapability] = [.displayOnly, .displayYesNo, .keyboardOnly, .noInputNoOutput, .keyboardDisplay]
    static let legacy: [[String]] = [
        ["JW", "JW", "PI", "JW", "PI"],
        ["JW", "JW", "PI", "JW", "PI"],
        ["PR", "PR", "PR", "JW", "PR"],
        ["JW", "JW", "JW", "JW", "JW"],
        ["PR", "PR", "PI", "JW", "PI"],
    ]
    static let secure: [[String]] = [
        ["JW", "JW", "PI", "JW", "PI"],
        ["JW", "NC", "PI", "JW", "NC"],
        ["PR", "PR", "PR", "JW", "PR"],
        ["JW", "JW", "JW", "JW", "JW"],
        ["PR", "NC", "PI", "JW", "NC"],
    ]

    static func code(_ m: PairingInitiator.Method) -> String {
        switch m {
        case .justWorks: "JW"
        case .numericComparison: "NC"
        case .passkey(let display): display ? "PI" : "PR"
        }
    }

    @Test func everyCellOfTable2_8() {
        for (i, ic) in Self.caps.enumerated() {
            for (r, rc) in Self.caps.enumerated() {
                #expect(Self.code(PairingInitiator.selectMethod(initiator: ic, responder: rc, sc: false, mitm: true)) == Self.legacy[i][r],
                        "legacy \(ic) x \(rc)")
                #expect(Self.code(PairingInitiator.selectMethod(initiator: ic, responder: rc, sc: true, mitm: true)) == Self.secure[i][r],
                        "SC \(ic) x \(rc)")
            }
        }
    }

    @Test func withoutMITMOnEitherSideItIsAlwaysJustWorks() {
        for ic in Self.caps {
            for rc in Self.caps {
                #expect(PairingInitiator.selectMethod(initiator: ic, responder: rc, sc: true, mitm: false) == .justWorks)
            }
        }
    }
}
