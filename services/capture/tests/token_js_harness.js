// Runs capture's token.js in Node over a stand-in for the few DOM calls it makes, on a clock the test moves:
// reads {form, forms, first, renewals, steps} on stdin (``renewals``, the scripts renewals load, in turn), prints what
// each step saw.
// A step may add a form (``add``: its action), move into (``focusin``) or type in (``input``) a form's field, submit
// a form (``submit``: its index; ``submitter``: the formaction of the button it is sent with) and load the renewal
// asked for (``load``), in that order.
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
let now = 0, loading = [];
const listeners = {};
function form(action) {
  const inputs = [];
  return {action, inputs, nodeName: "FORM", getAttribute: () => action,
          querySelector: (sel) => inputs.find((i) => sel.includes('"' + i.name + '"')) || null,
          appendChild: (i) => inputs.push(i)};
}
const forms = input.forms.map(form);
Date.now = () => now;
globalThis.setTimeout = globalThis.setInterval = () => 0;
globalThis.window = globalThis;
window.addEventListener = (type, fn) => { (listeners[type] = listeners[type] || []).push(fn); };
globalThis.document = {
  readyState: "complete", baseURI: "https://www.example.com/demo", currentScript: {src: "https://capture.example/t.js"},
  querySelectorAll: () => forms, addEventListener: window.addEventListener,
  createElement: (tag) => ({tag, remove() {}}), head: {appendChild: (script) => loading.push(script)},
};
const token = (f) => ((f.inputs[0] || {}).value || null);
const seen = [];
(0, eval)(input.first);
for (const step of input.steps) {
  now = step.at * 1000;
  if (step.add) forms.push(form(step.add));
  for (const type of ["focusin", "input"]) {
    if (step[type] !== undefined) for (const fn of listeners[type] || []) fn({target: {form: forms[step[type]]}});
  }
  const script = step.load && loading.shift();
  if (script) {  // none asked for: the step's tokens and "asked" say so
    (0, eval)(input.renewals.shift());
    script.onload();
  }
  if (step.submit !== undefined) {
    const submitter = step.submitter === undefined ? null
      : {getAttribute: (name) => (name === "formaction" ? step.submitter : null)};
    for (const fn of listeners.submit) fn({target: forms[step.submit], submitter});
  }
  // Read first, as a page posting with fetch() reads it when it sends: the read renews, as a submit does.
  const global = window.leadpipeTokens[input.form];
  seen.push({tokens: forms.map(token), asked: loading.length, global});
}
console.log(JSON.stringify(seen));
