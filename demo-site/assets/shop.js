/*
 * Waymark Goods — demo shop behaviour (plain ES5-style JavaScript, no build step).
 *
 * The shop keeps its own state in sessionStorage only:
 *   demo-consent     "granted" | "denied"   (the visitor's analytics choice, this tab only)
 *   demo-cart        JSON [{id, name, price, quantity}]
 *   demo-last-order  JSON {id, value, items}  (read by confirmation.html)
 * It never sets cookies and never touches localStorage.
 *
 * Analytics capture styles are mixed on purpose (see demo-site/README.md):
 *   - "Add to cart" on product pages: declarative data-waymark-* attributes only (no JS call here).
 *   - cart.html: JS API  waymark('cart', 'view_cart' | 'remove', …).
 *   - Checkout / Place order: GA4-style window.dataLayer pushes.
 *   - Newsletter: JS API  waymark('track', 'newsletter_signup', …).
 *   - Care guide download: declarative data-waymark-event attributes.
 *
 * Everything works without the SDK: every call to waymark() goes through wm(), which
 * never throws, and the page never depends on the SDK having loaded.
 */
(function () {
  'use strict';

  var CURRENCY = 'EUR';
  var KEY_CONSENT = 'demo-consent';
  var KEY_CART = 'demo-cart';
  var KEY_LAST_ORDER = 'demo-last-order';

  /* The product catalogue. Ids and prices must match the data-waymark-* attributes. */
  var CATALOG = {
    'sku-mug': { id: 'sku-mug', name: 'Blue mug', price: 12.5, category: 'Drinkware', url: '/products/mug.html', image: '/assets/products/mug.svg' },
    'sku-teapot': { id: 'sku-teapot', name: 'Stoneware teapot', price: 34.0, category: 'Teaware', url: '/products/teapot.html', image: '/assets/products/teapot.svg' },
    'sku-apron': { id: 'sku-apron', name: 'Linen apron', price: 19.9, category: 'Textiles', url: '/products/apron.html', image: '/assets/products/apron.svg' }
  };

  /* ---------- safe helpers ---------- */

  /** Calls the Waymark SDK (or its queueing stub). Never throws; a no-op if it is missing. */
  function wm() {
    try {
      if (typeof window.waymark === 'function') {
        window.waymark.apply(window, arguments);
      }
    } catch (e) { /* analytics must never break the shop */ }
  }

  /** Pushes a GA4-style object to window.dataLayer. Never throws. */
  function pushDataLayer(obj) {
    try {
      window.dataLayer = window.dataLayer || [];
      window.dataLayer.push(obj);
    } catch (e) { /* ignore */ }
  }

  var memoryStore = {};
  function storeGet(key) {
    try { return window.sessionStorage.getItem(key); } catch (e) { return memoryStore[key] || null; }
  }
  function storeSet(key, value) {
    try { window.sessionStorage.setItem(key, value); } catch (e) { memoryStore[key] = value; }
  }

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function round2(n) { return Math.round(n * 100) / 100; }

  var priceFormat = null;
  try { priceFormat = new Intl.NumberFormat('en-IE', { style: 'currency', currency: CURRENCY }); } catch (e) { /* old browser */ }
  function money(n) {
    return priceFormat ? priceFormat.format(n) : '\u20ac' + n.toFixed(2);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
        if (k === 'text') node.textContent = attrs[k];
        else if (k === 'className') node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      }
    }
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  /* ---------- cart state ---------- */

  function readCart() {
    var raw = storeGet(KEY_CART);
    if (!raw) return [];
    try {
      var list = JSON.parse(raw);
      if (!Array.isArray(list)) return [];
      return list.filter(function (it) {
        return it && typeof it.id === 'string' && typeof it.price === 'number' &&
          typeof it.quantity === 'number' && it.quantity >= 1;
      });
    } catch (e) {
      return [];
    }
  }

  function writeCart(cart) {
    storeSet(KEY_CART, JSON.stringify(cart));
    updateCartCount();
  }

  function cartQuantity(cart) {
    return cart.reduce(function (n, it) { return n + it.quantity; }, 0);
  }

  function cartValue(cart) {
    return round2(cart.reduce(function (n, it) { return n + it.price * it.quantity; }, 0));
  }

  function addToCart(id) {
    var product = CATALOG[id];
    if (!product) return null;
    var cart = readCart();
    var line = null;
    for (var i = 0; i < cart.length; i++) if (cart[i].id === id) line = cart[i];
    if (line) line.quantity += 1;
    else cart.push({ id: product.id, name: product.name, price: product.price, quantity: 1 });
    writeCart(cart);
    return product;
  }

  /** Items in the shape of the Waymark JS API: {id, name, price, quantity}. */
  function apiItems(cart) {
    return cart.map(function (it) {
      return { id: it.id, name: it.name, price: it.price, quantity: it.quantity };
    });
  }

  /** Items in the GA4 ecommerce shape. */
  function ga4Items(cart) {
    return cart.map(function (it) {
      var p = CATALOG[it.id];
      return {
        item_id: it.id,
        item_name: it.name,
        price: it.price,
        quantity: it.quantity,
        item_category: p ? p.category : 'Kitchen'
      };
    });
  }

  function updateCartCount() {
    var badge = document.getElementById('cart-count');
    if (!badge) return;
    var n = cartQuantity(readCart());
    badge.textContent = String(n);
    badge.setAttribute('data-count', String(n));
    var link = badge.closest ? badge.closest('a') : null;
    if (link) link.setAttribute('aria-label', 'Cart, ' + n + (n === 1 ? ' item' : ' items'));
  }

  /* ---------- toast ---------- */

  var toastTimer = null;
  function toast(message, linkText, linkHref) {
    var box = document.getElementById('toast');
    if (!box) {
      box = el('div', { id: 'toast', className: 'toast', role: 'status', 'aria-live': 'polite' });
      document.body.appendChild(box);
    }
    box.textContent = '';
    box.appendChild(el('span', { text: message }));
    if (linkText) box.appendChild(el('a', { href: linkHref, text: linkText }));
    box.classList.add('is-visible');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.classList.remove('is-visible'); }, 3200);
  }

  /* ---------- consent ---------- */

  function currentConsent() {
    var v = storeGet(KEY_CONSENT);
    return v === 'granted' || v === 'denied' ? v : null;
  }

  function layoutForBanner() {
    var banner = document.getElementById('consent-banner');
    var open = banner && !banner.hidden;
    document.body.classList.toggle('consent-open', !!open);
    // Keep the end of the page (footer, privacy settings, newsletter) reachable above the sheet.
    var footer = document.querySelector('.site-footer');
    var pad = open ? (banner.offsetHeight + 16) + 'px' : '';
    if (footer) footer.style.paddingBottom = pad;
    else document.body.style.paddingBottom = pad;
  }

  function showBanner() {
    var banner = document.getElementById('consent-banner');
    if (!banner) return;
    var choice = currentConsent();
    var status = document.getElementById('consent-current');
    var close = document.getElementById('consent-close');
    if (status) {
      status.hidden = !choice;
      status.textContent = choice === 'granted'
        ? 'Current choice: analytics accepted.'
        : choice === 'denied' ? 'Current choice: analytics declined.' : '';
    }
    if (close) close.hidden = !choice;
    $all('#consent-accept, #consent-deny').forEach(function (b) { b.removeAttribute('aria-pressed'); });
    if (choice) {
      var pressed = document.getElementById(choice === 'granted' ? 'consent-accept' : 'consent-deny');
      if (pressed) pressed.setAttribute('aria-pressed', 'true');
    }
    banner.hidden = false;
    layoutForBanner();
  }

  function hideBanner() {
    var banner = document.getElementById('consent-banner');
    if (banner) banner.hidden = true;
    layoutForBanner();
  }

  /** The visitor chose: remember it for this tab and tell the SDK. */
  function choose(choice) {
    var previous = currentConsent();
    storeSet(KEY_CONSENT, choice);
    if (choice !== previous) {
      if (choice === 'granted') wm('consent', 'grant');
      else if (previous === 'granted') wm('consent', 'revoke');
      else wm('consent', 'deny');
    }
    hideBanner();
  }

  function initConsent() {
    var choice = currentConsent();
    // Re-apply the remembered choice on every page load (the SDK itself stores nothing).
    if (choice === 'granted') wm('consent', 'grant');
    else if (choice === 'denied') wm('consent', 'deny');
    else showBanner();

    var accept = document.getElementById('consent-accept');
    var deny = document.getElementById('consent-deny');
    var close = document.getElementById('consent-close');
    var settings = document.getElementById('privacy-settings');
    if (accept) accept.addEventListener('click', function () { choose('granted'); });
    if (deny) deny.addEventListener('click', function () { choose('denied'); });
    if (close) close.addEventListener('click', hideBanner);
    if (settings) {
      settings.addEventListener('click', function (e) {
        e.preventDefault();
        showBanner();
        // Focus the banner's title, not one of the two choices: neither is pre-selected.
        var title = document.getElementById('consent-title');
        if (title) {
          title.setAttribute('tabindex', '-1');
          title.focus();
        }
      });
    }
    window.addEventListener('resize', layoutForBanner);
  }

  /* ---------- newsletter (footer) ---------- */

  function initNewsletter() {
    var form = document.getElementById('newsletter-form');
    if (!form) return;
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var input = document.getElementById('newsletter-email');
      if (input && input.checkValidity && !input.checkValidity()) return;
      // Only the fact of a signup and where it happened — never the address.
      wm('track', 'newsletter_signup', { placement: 'footer' });
      if (input) input.value = '';
      var status = document.getElementById('newsletter-status');
      if (status) status.textContent = 'Thanks for signing up! (Demo: your address was not stored or sent anywhere.)';
    });
  }

  /* ---------- product pages ---------- */

  function initAddToCart() {
    $all('.add-to-cart').forEach(function (button) {
      button.addEventListener('click', function () {
        // Analytics for this click come from the button's data-waymark-* attributes,
        // captured by the SDK's own delegated listener. No waymark() call here on purpose.
        var id = button.getAttribute('data-waymark-id');
        var product = addToCart(id);
        if (!product) return;
        var label = button.querySelector('.btn-label') || button;
        var original = button.getAttribute('data-label') || label.textContent;
        button.setAttribute('data-label', original);
        label.textContent = 'Added \u2713';
        button.classList.add('is-added');
        setTimeout(function () {
          label.textContent = original;
          button.classList.remove('is-added');
        }, 1400);
        toast(product.name + ' added to your cart.', 'View cart', '/cart.html');
      });
    });
  }

  /* ---------- cart page ---------- */

  function renderCart() {
    var list = document.getElementById('cart-items');
    if (!list) return;
    var cart = readCart();
    list.textContent = '';

    var empty = document.getElementById('cart-empty');
    var summary = document.getElementById('cart-summary');
    if (empty) empty.hidden = cart.length > 0;
    if (summary) summary.hidden = cart.length === 0;

    cart.forEach(function (item) {
      var product = CATALOG[item.id] || {};
      var remove = el('button', {
        type: 'button',
        className: 'remove-item',
        'data-id': item.id,
        'aria-label': 'Remove ' + item.name + ' from cart',
        text: 'Remove'
      });
      remove.addEventListener('click', function () { removeLine(item.id); });

      var row = el('li', { className: 'cart-row', 'data-id': item.id }, [
        el('a', { className: 'cart-thumb', href: product.url || '#', tabindex: '-1', 'aria-hidden': 'true' }, [
          el('img', { src: product.image || '/assets/logo.svg', alt: '', width: '72', height: '72' })
        ]),
        el('div', { className: 'cart-info' }, [
          el('a', { className: 'cart-name', href: product.url || '#', text: item.name }),
          el('span', { className: 'cart-meta', text: money(item.price) + ' \u00d7 ' + item.quantity })
        ]),
        el('span', { className: 'cart-line-total', text: money(round2(item.price * item.quantity)) }),
        remove
      ]);
      list.appendChild(row);
    });

    var total = cartValue(cart);
    $all('[data-cart-subtotal], [data-cart-total]').forEach(function (n) { n.textContent = money(total); });
    var itemsLabel = document.getElementById('cart-items-label');
    if (itemsLabel) {
      var q = cartQuantity(cart);
      itemsLabel.textContent = q + (q === 1 ? ' item' : ' items');
    }
    var checkout = document.getElementById('checkout');
    if (checkout) {
      if (cart.length === 0) checkout.setAttribute('aria-disabled', 'true');
      else checkout.removeAttribute('aria-disabled');
    }
  }

  function removeLine(id) {
    var cart = readCart();
    var removed = cart.filter(function (it) { return it.id === id; });
    if (!removed.length) return;
    writeCart(cart.filter(function (it) { return it.id !== id; }));
    // JS API capture style.
    wm('cart', 'remove', { currency: CURRENCY, items: apiItems(removed) });
    renderCart();
    toast(removed[0].name + ' removed from your cart.');
  }

  function initCartPage() {
    renderCart();
    // JS API capture style: one view_cart per visit of cart.html (items may be empty).
    wm('cart', 'view_cart', { currency: CURRENCY, items: apiItems(readCart()) });

    var checkout = document.getElementById('checkout');
    if (checkout) {
      checkout.addEventListener('click', function (e) {
        var cart = readCart();
        if (!cart.length) { e.preventDefault(); return; }
        // GA4 dataLayer capture style. The link then navigates to checkout.html as usual.
        pushDataLayer({
          event: 'begin_checkout',
          ecommerce: { currency: CURRENCY, value: cartValue(cart), items: ga4Items(cart) }
        });
      });
    }
  }

  /* ---------- checkout page ---------- */

  function renderOrderSummary(container, cart) {
    if (!container) return;
    container.textContent = '';
    cart.forEach(function (item) {
      container.appendChild(el('li', { className: 'summary-row' }, [
        el('span', { text: item.quantity + ' \u00d7 ' + item.name }),
        el('span', { text: money(round2(item.price * item.quantity)) })
      ]));
    });
  }

  function newOrderId() {
    var n;
    try {
      var buf = new Uint32Array(1);
      window.crypto.getRandomValues(buf);
      n = buf[0] % 1000000;
    } catch (e) {
      n = Math.floor(Math.random() * 1000000);
    }
    return 'WM-' + ('000000' + n).slice(-6);
  }

  function initCheckoutPage() {
    var cart = readCart();
    var form = document.getElementById('checkout-form');
    var button = document.getElementById('place-order');
    var empty = document.getElementById('checkout-empty');

    renderOrderSummary(document.getElementById('checkout-items'), cart);
    $all('[data-cart-total]').forEach(function (n) { n.textContent = money(cartValue(cart)); });
    if (empty) empty.hidden = cart.length > 0;
    if (button) button.disabled = cart.length === 0;

    if (cart.length) {
      // GA4 dataLayer capture style: arriving on checkout.html.
      pushDataLayer({
        event: 'begin_checkout',
        ecommerce: { currency: CURRENCY, value: cartValue(cart), items: ga4Items(cart) }
      });
    }

    if (!form) return;
    form.addEventListener('submit', function (e) {
      // The form's fields are never read or sent anywhere: this is a demo.
      e.preventDefault();
      var current = readCart();
      if (!current.length || (button && button.getAttribute('aria-busy') === 'true')) return;
      var orderId = newOrderId();
      var value = cartValue(current);
      pushDataLayer({
        event: 'purchase',
        ecommerce: { transaction_id: orderId, currency: CURRENCY, value: value, items: ga4Items(current) }
      });
      storeSet(KEY_LAST_ORDER, JSON.stringify({ id: orderId, value: value, items: current }));
      writeCart([]);
      if (button) {
        button.setAttribute('aria-busy', 'true');
        button.disabled = true;
        var label = button.querySelector('.btn-label') || button;
        label.textContent = 'Placing order\u2026';
      }
      // A short pause, as a real shop would wait for its server.
      setTimeout(function () {
        window.location.href = '/confirmation.html?order=' + encodeURIComponent(orderId);
      }, 350);
    });
  }

  /* ---------- confirmation page ---------- */

  function initConfirmationPage() {
    var orderId = null;
    try {
      var m = /[?&]order=(WM-\d{6})(?:&|$)/.exec(window.location.search);
      if (m) orderId = m[1];
    } catch (e) { /* ignore */ }

    var idNode = document.getElementById('order-id');
    var found = document.getElementById('order-found');
    var missing = document.getElementById('order-missing');
    if (idNode && orderId) idNode.textContent = orderId;
    if (found) found.hidden = !orderId;
    if (missing) missing.hidden = !!orderId;

    var last = null;
    try { last = JSON.parse(storeGet(KEY_LAST_ORDER) || 'null'); } catch (e) { last = null; }
    if (orderId && last && last.id === orderId && Array.isArray(last.items)) {
      renderOrderSummary(document.getElementById('order-items'), last.items);
      $all('[data-order-total]').forEach(function (n) { n.textContent = money(last.value || 0); });
      var details = document.getElementById('order-details');
      if (details) details.hidden = false;
    }
  }

  /* ---------- boot ---------- */

  function boot() {
    var page = document.body ? document.body.getAttribute('data-page') : null;
    var steps = [initConsent, updateCartCount, initNewsletter];
    if (page === 'product') steps.push(initAddToCart);
    if (page === 'cart') steps.push(initCartPage);
    if (page === 'checkout') steps.push(initCheckoutPage);
    if (page === 'confirmation') steps.push(initConfirmationPage);
    steps.forEach(function (step) {
      try { step(); } catch (e) {
        if (window.console && console.error) console.error('[waymark-goods]', e);
      }
    });
  }

  // Shared with the gift finder (assets/app.js).
  window.WaymarkGoods = { catalog: CATALOG, money: money, wm: wm };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
