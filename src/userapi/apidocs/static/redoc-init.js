// Starts ReDoc on /redoc. A file of its own, not an inline script, so the page's
// Content-Security-Policy can allow scripts from this origin only. ReDoc adds <style>
// elements as it renders; it puts the nonce it is given on each, and the page's CSP admits
// that nonce. The nonce rides on this script's element (its `nonce` property: browsers hide
// the attribute), not on ReDoc's container, whose attributes ReDoc reads as options.
"use strict";
(function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.dataset.specUrl, { nonce: document.currentScript.nonce }, root);
})();
