/*
 * Waymark Goods — Gift finder, a tiny single-page app under /app/.
 *
 * Routes come from location.pathname (the collector serves app/index.html for any /app/… path):
 *   /app/                    start
 *   /app/gifts               all gifts
 *   /app/gifts/under-25      gifts under €25
 *   /app/gifts/tea-lovers    gifts for tea lovers
 *   anything else under /app  an in-app "not found" view
 * In-app links carry data-spa-link and navigate with history.pushState; Back/Forward work
 * through popstate. The Waymark SDK notices these navigations by itself (data-spa="history",
 * the default), so this file never calls waymark().
 */
(function () {
  'use strict';

  var shop = window.WaymarkGoods || {};
  var CATALOG = shop.catalog || {};
  var money = shop.money || function (n) { return '\u20ac' + n.toFixed(2); };
  var SITE = 'Waymark Goods';

  var BLURBS = {
    'sku-mug': 'A cheerful everyday mug, glazed in deep cornflower blue.',
    'sku-teapot': 'Pours cleanly, keeps tea hot, and looks lovely on the table.',
    'sku-apron': 'Washed linen that softens with every bake.'
  };

  var FILTERS = [
    { slug: '', path: '/app/gifts', label: 'All gifts', title: 'All gifts',
      intro: 'Every piece in the shop makes a good present. Here they all are.',
      match: function () { return true; } },
    { slug: 'under-25', path: '/app/gifts/under-25', label: 'Under \u20ac25', title: 'Gifts under \u20ac25',
      intro: 'Small, thoughtful and kind to your wallet.',
      match: function (p) { return p.price < 25; } },
    { slug: 'tea-lovers', path: '/app/gifts/tea-lovers', label: 'For tea lovers', title: 'Gifts for tea lovers',
      intro: 'For the friend who always has the kettle on.',
      match: function (p) { return p.id === 'sku-teapot' || p.id === 'sku-mug'; } }
  ];

  /* ---------- routing ---------- */

  function normalize(pathname) {
    var p = pathname || '/app/';
    if (p === '/app' || p === '/app/index.html') return '/app/';
    if (p.length > 5 && p.charAt(p.length - 1) === '/') p = p.slice(0, -1);
    return p;
  }

  function resolve(pathname) {
    var p = normalize(pathname);
    if (p === '/app/') return { name: 'start', title: 'Gift finder' };
    for (var i = 0; i < FILTERS.length; i++) {
      if (FILTERS[i].path === p) return { name: 'gifts', filter: FILTERS[i], title: FILTERS[i].title + ' \u00b7 Gift finder' };
    }
    return { name: 'not-found', title: 'Not found \u00b7 Gift finder' };
  }

  /* ---------- DOM helpers ---------- */

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
    (children || []).forEach(function (c) {
      if (c == null) return;
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }

  function spaLink(href, text, className, extra) {
    var attrs = { href: href, 'data-spa-link': '', className: className || '' };
    if (extra) for (var k in extra) attrs[k] = extra[k];
    return el('a', attrs, [text]);
  }

  function products() {
    return Object.keys(CATALOG).map(function (k) { return CATALOG[k]; });
  }

  /* ---------- views ---------- */

  function viewStart() {
    var choices = [
      { href: '/app/gifts', label: 'Show me everything', note: 'Browse all gift ideas', icon: 'all' },
      { href: '/app/gifts/under-25', label: 'Something under \u20ac25', note: 'Small and thoughtful', icon: 'tag' },
      { href: '/app/gifts/tea-lovers', label: 'For a tea lover', note: 'Kettle always on', icon: 'cup' }
    ];
    return el('div', { className: 'app-start' }, [
      el('p', { className: 'eyebrow', text: 'Gift finder' }),
      el('h1', { className: 'app-heading', tabindex: '-1', text: 'Find a gift in two clicks' }),
      el('p', { className: 'lede', text: 'Tell us a little about who it\u2019s for and we\u2019ll suggest something from the shop.' }),
      el('ul', { className: 'choice-grid', role: 'list' }, choices.map(function (c) {
        var a = spaLink(c.href, null, 'choice-card');
        a.appendChild(el('span', { className: 'choice-icon choice-icon-' + c.icon, 'aria-hidden': 'true' }));
        a.appendChild(el('span', { className: 'choice-label', text: c.label }));
        a.appendChild(el('span', { className: 'choice-note', text: c.note }));
        return el('li', null, [a]);
      }))
    ]);
  }

  function viewGifts(filter) {
    var list = products().filter(filter.match);
    var crumbs = el('nav', { className: 'breadcrumbs', 'aria-label': 'Breadcrumb' }, [
      spaLink('/app/', 'Gift finder'),
      el('span', { 'aria-hidden': 'true', text: ' / ' }),
      filter.slug ? spaLink('/app/gifts', 'Gifts') : el('span', { 'aria-current': 'page', text: 'Gifts' }),
      filter.slug ? el('span', { 'aria-hidden': 'true', text: ' / ' }) : null,
      filter.slug ? el('span', { 'aria-current': 'page', text: filter.label }) : null
    ]);
    var chips = el('ul', { className: 'chips', role: 'list', 'aria-label': 'Filter gifts' }, FILTERS.map(function (f) {
      return el('li', null, [spaLink(f.path, f.label, 'chip', f === filter ? { 'aria-current': 'page' } : null)]);
    }));
    var grid = el('ul', { className: 'product-grid', role: 'list' }, list.map(function (p) {
      return el('li', { className: 'product-card' }, [
        el('a', { className: 'product-media media-' + p.id.replace('sku-', ''), href: p.url, tabindex: '-1', 'aria-hidden': 'true' }, [
          el('img', { src: p.image, alt: '', width: '320', height: '320', loading: 'lazy' })
        ]),
        el('div', { className: 'product-body' }, [
          el('p', { className: 'product-category', text: p.category }),
          el('h2', { className: 'product-title' }, [el('a', { href: p.url, text: p.name })]),
          el('p', { className: 'product-blurb', text: BLURBS[p.id] || '' }),
          el('div', { className: 'product-foot' }, [
            el('span', { className: 'price', text: money(p.price) }),
            el('a', { className: 'btn btn-ghost btn-small', href: p.url, text: 'View gift' })
          ])
        ])
      ]);
    }));
    return el('div', { className: 'app-gifts' }, [
      crumbs,
      el('h1', { className: 'app-heading', tabindex: '-1', text: filter.title }),
      el('p', { className: 'lede', text: filter.intro }),
      chips,
      el('p', { className: 'result-count', text: list.length + (list.length === 1 ? ' gift' : ' gifts') }),
      grid,
      el('p', { className: 'app-restart' }, [spaLink('/app/', '\u2190 Start over')])
    ]);
  }

  function viewNotFound() {
    return el('div', { className: 'app-notfound' }, [
      el('p', { className: 'eyebrow', text: 'Gift finder' }),
      el('h1', { className: 'app-heading', tabindex: '-1', text: 'We couldn\u2019t find that page' }),
      el('p', { className: 'lede', text: 'The gift finder doesn\u2019t have a page at this address.' }),
      el('p', null, [spaLink('/app/', 'Back to the gift finder', 'btn btn-primary')])
    ]);
  }

  /* ---------- render & navigation ---------- */

  var root = null;

  function render(focus) {
    if (!root) return;
    var route = resolve(window.location.pathname);
    var view = route.name === 'start' ? viewStart()
      : route.name === 'gifts' ? viewGifts(route.filter)
      : viewNotFound();
    document.title = route.title + ' \u2014 ' + SITE;
    root.setAttribute('data-route', route.name === 'gifts' ? normalize(window.location.pathname) : route.name);
    root.textContent = '';
    root.appendChild(view);
    if (focus) {
      var h = root.querySelector('.app-heading');
      if (h && h.focus) {
        try { h.focus({ preventScroll: true }); } catch (e) { h.focus(); }
      }
    }
  }

  function navigate(href) {
    var url;
    try { url = new URL(href, window.location.href); } catch (e) { window.location.href = href; return; }
    if (url.origin !== window.location.origin) { window.location.href = href; return; }
    if (url.pathname + url.search === window.location.pathname + window.location.search) {
      return; // already here: no new history entry, no duplicate page view
    }
    // Set the title first so the page view recorded on pushState carries the new title.
    document.title = resolve(url.pathname).title + ' \u2014 ' + SITE;
    window.history.pushState({ spa: true }, '', url.pathname + url.search);
    render(true);
    window.scrollTo(0, 0);
  }

  function onClick(e) {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    var target = e.target;
    var link = target && target.closest ? target.closest('a[data-spa-link]') : null;
    if (!link || (link.target && link.target !== '_self')) return;
    e.preventDefault();
    navigate(link.getAttribute('href'));
  }

  function boot() {
    root = document.getElementById('app-view');
    if (!root) return;
    if (!window.history || !window.history.pushState) {
      render(false); // very old browser: links still work as full page loads
      return;
    }
    document.addEventListener('click', onClick);
    window.addEventListener('popstate', function () { render(true); });
    render(false);
  }

  try {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
    else boot();
  } catch (e) {
    if (window.console && console.error) console.error('[gift-finder]', e);
  }
})();
