// Drop-in buy buttons for a seller's page:
//   <script src="https://GATEWAY/static/checkout.js" data-product="pro"></script>
// Renders one button per enabled payment method (from /purchase-options/{product}, which
// answers cross-origin only to origins in GATEWAY_ALLOWED_ORIGINS) right after the script
// tag; each opens the gateway's chooser page for the product. On any other origin the
// request is refused by the browser and nothing is rendered.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var product = script.getAttribute("data-product");
  if (!product) { return; }
  var base = new URL(script.src).origin;
  var chooser = base + "/buy/" + encodeURIComponent(product);

  fetch(base + "/purchase-options/" + encodeURIComponent(product), {
    mode: "cors", credentials: "omit", headers: { Accept: "application/json" }
  })
    .then(function (resp) { return resp.ok ? resp.json() : null; })
    .then(function (doc) {
      if (!doc || !doc.options || !doc.options.length) { return; }
      var box = document.createElement("div");
      box.className = "checkout-gateway-buttons";
      box.setAttribute("data-product", product);
      doc.options.forEach(function (option) {
        var link = document.createElement("a");
        link.href = chooser + "?provider=" + encodeURIComponent(option.provider);
        link.className = "checkout-gateway-button";
        link.setAttribute("data-provider", option.provider);
        link.textContent = option.label;
        link.title = option.fee_hint + " · " + option.speed_hint;
        // CSSOM, not a style attribute: allowed under a strict CSP on the seller's page.
        link.style.display = "inline-block";
        link.style.margin = "0 .5rem .5rem 0";
        link.style.padding = ".6rem 1.1rem";
        link.style.borderRadius = "8px";
        link.style.background = "#1e40af";
        link.style.color = "#fff";
        link.style.textDecoration = "none";
        link.style.fontWeight = "600";
        box.appendChild(link);
      });
      script.parentNode.insertBefore(box, script.nextSibling);
    })
    .catch(function () { /* not an allowed origin, or the gateway is down: no buttons */ });
})();
