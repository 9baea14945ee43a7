// The privacy conformance table from the runners' reports: which test claims which promise, and
// what a promise shows when its test failed, did not run, or does not exist yet.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { conformance, junitCases, nodeTestsIn, promisesOf, pytestTestsIn, renderTable, sameTest, type TestResult } from "../src/conformance.ts";

const promises = [
  { id: "P1", promise: "only P1's fields", code: [{ file: "ingress/src/envelope.ts", name: "extract" }] },
  { id: "P6-P7", promise: "WAV", code: [{ file: "job-image/src/unmix_job/decode.py", name: "def decode" }] },
  { id: "P8", promise: "audio never leaves", code: [], operator: "a CNI that enforces NetworkPolicy" },
  { id: "P10", promise: "reply in the thread", code: [] },
  { id: "P14", promise: "purge", code: [] },
];

// as node's junit reporter and pytest's --junitxml write them
const NODE = `<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="what the parser keeps" tests="1">
    <testcase name="P1: a voice note, nothing else" classname="x" file="/repo/ingress/test/envelope.test.ts"/>
  </testsuite>
  <testsuite name="admin">
    <testsuite name="nested">
      <testcase name="P10, P14: a reply &amp; a purge" classname="x" file="/repo/e2e/test/journey.test.ts">
        <failure type="testCodeFailure" message="boom">AssertionError</failure>
      </testcase>
    </testsuite>
  </testsuite>
  <testcase name="not a promise" classname="test" file="/repo/e2e/test/journey.test.ts"/>
</testsuites>`;
const PYTEST = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.test_egress" name="test_P8_nothing_else[htdemucs]" time="1"/>
<testcase classname="tests.test_egress" name="test_P8_nothing_else[dfn3]" time="1"><skipped message="no model"/></testcase>
<testcase classname="tests.test_media" name="test_P6_P7_decoded_to_44k1_stereo" time="1"/>
</testsuite></testsuites>`;

const nodeResults = () => junitCases(NODE, (c) => (c.file ?? "").replace("/repo/", ""));
const pyResults = () => junitCases(PYTEST, (c) => `job-image/${(c.classname ?? "").replaceAll(".", "/")}.py`);

describe("privacy conformance", () => {
  test("test names claim promises: P<n>: in node, test_P<n>_ in pytest, lists and ranges", () => {
    assert.deepEqual(promisesOf("P1: a voice note"), [1]);
    assert.deepEqual(promisesOf("P6-P7: decoded"), [6, 7]);
    assert.deepEqual(promisesOf("P10, P14: both"), [10, 14]);
    assert.deepEqual(promisesOf("test_P6_P7_decoded"), [6, 7]);
    assert.deepEqual(promisesOf("test_P8_nothing_else[dfn3]"), [8]);
    for (const no of ["P1 without a colon", "a P1: later", "test_pipeline_P9", "P: x"]) assert.deepEqual(promisesOf(no), [], no);
  });

  test("tests are found in the sources, so a test that never reported shows as not run", () => {
    assert.deepEqual(nodeTestsIn(`test("P3: images", async () => {});\n  test("other", () => {});\n  it('P15: broadcast', () => {})`), [
      "P3: images",
      "P15: broadcast",
    ]);
    assert.deepEqual(pytestTestsIn("def test_P9_mp3(run_job) -> None:\ndef test_mp3():\nasync def test_P8_x():"), ["test_P9_mp3", "test_P8_x"]);
  });

  test("a test named by a template literal (made in a loop) is run when any of its names ran", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the name as the test's source writes it, placeholder and all
    const declared = [{ file: "core/test/whatsapp-client.test.ts", name: "P10: ${what}: refused, and no request goes there" }];
    const ran = (name: string): TestResult[] => [{ file: "core/test/whatsapp-client.test.ts", name, outcome: "passed" }];
    const p10 = (results: TestResult[]) => conformance(promises, declared, results).find((r) => r.promise.id === "P10");
    assert.equal(p10(ran("P10: another HTTPS host: refused, and no request goes there"))?.outcome, "passed");
    assert.equal(p10(ran("P10: another HTTPS host: accepted"))?.outcome, "not run", "the fixed parts must match");
    assert.equal(sameTest("P4: a (b) [c]: x", "P4: a (b) [c]: x"), true);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: as above
    assert.equal(sameTest("P4: ${x}.y", "P4: abcy"), false, "a dot is a dot");
  });

  test("each promise gets its tests and their result; one failure fails it, no test is missing", () => {
    const declared = [
      { file: "ingress/test/envelope.test.ts", name: "P1: a voice note, nothing else" },
      { file: "job-image/tests/test_egress.py", name: "test_P8_nothing_else" },
      { file: "job-image/tests/test_media.py", name: "test_P6_P7_decoded_to_44k1_stereo" },
      { file: "ingress/test/worker.test.ts", name: "P14: purge by number" },
    ];
    const rows = conformance(promises, declared, [...nodeResults(), ...pyResults()]);
    const by = Object.fromEntries(rows.map((r) => [r.promise.id, r]));
    assert.equal(by.P1?.outcome, "passed");
    assert.equal(by["P6-P7"]?.outcome, "passed");
    assert.deepEqual(
      by.P8?.tests.map((t) => [t.name, t.outcome]),
      [
        ["test_P8_nothing_else[htdemucs]", "passed"],
        ["test_P8_nothing_else[dfn3]", "skipped"],
      ],
    );
    assert.equal(by.P8?.outcome, "passed", "one case ran and passed; the other was skipped");
    assert.equal(by.P10?.outcome, "failed");
    assert.equal(by.P14?.outcome, "failed", "the failing test claims P14 too; the declared one that never reported is listed");
    assert.deepEqual(
      by.P14?.tests.map((t) => t.outcome),
      ["failed", "not run"],
    );

    const alone = conformance(promises, declared, nodeResults());
    assert.equal(alone.find((r) => r.promise.id === "P8")?.outcome, "not run", "pytest never ran");
    assert.equal(conformance(promises, [], []).find((r) => r.promise.id === "P1")?.outcome, "missing");
  });

  test("the page lists every promise with its code, tests and result, and what the operator provides", () => {
    const page = renderTable(conformance(promises, [], nodeResults()), { when: "2026-12-02 09:00 UTC", commit: "abc1234", command: "make conformance" });
    assert.match(
      page,
      /\| P1 \| only P1's fields \| \[ingress\/src\/envelope\.ts\]\(\.\.\/ingress\/src\/envelope\.ts\) \(`extract`\) \| ✅ `ingress\/test\/envelope\.test\.ts`: P1: a voice note, nothing else \| ✅ passed \(1\/1\) \|/,
    );
    assert.match(page, /\| P8 \| audio never leaves \| {2}\| none yet \| ❌ missing \|/);
    assert.match(page, /\| P10 \|.*a reply & a purge \| ❌ failed \(0\/1\) \|/);
    assert.match(page, /## What the operator must provide\n\n- \*\*P8\*\*: a CNI that enforces NetworkPolicy/);
    assert.match(page, /Last run: 2026-12-02 09:00 UTC, commit `abc1234`/);
  });
});
