package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// The shopper's pages: cart, checkout, orders. They need a session (without one
// they send the shopper to the sign-in form) and are never cached.

// maxQty bounds the quantity of one article in a form.
const maxQty = 99

// cartPage is the data of the cart page.
type cartPage struct {
	Cart  Cart
	Added string // the name of the article just added, for #cart-notice
	Error string // #cart-error
}

// signedIn returns the request's session, or sends a signed-out shopper to the
// sign-in form and returns false.
func (s *server) signedIn(w http.ResponseWriter, r *http.Request, next string) (req, bool) {
	q := s.begin(w, r)
	if q.sess == nil {
		toSignin(w, r, next)
		return q, false
	}
	return q, true
}

// loadCart fetches the shopper's cart for a page. A token the gateway refused ends
// the session; any other failure renders the error page. ok is false when the
// answer has been sent.
func (s *server) loadCart(w http.ResponseWriter, r *http.Request, q req, next string) (Cart, *site, bool) {
	var cart Cart
	err := withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) (err error) {
		cart, err = s.gw.cart(ctx, q.who)
		return err
	})
	if statusOf(err) == http.StatusUnauthorized {
		clearSession(w, r)
		toSignin(w, r, next)
		return cart, nil, false
	}
	st := s.newSite(w, r, q.sess, "")
	if err != nil {
		s.upstreamFail(w, r, st, "cart", err)
		return cart, nil, false
	}
	st.CartCount = cart.Count()
	return cart, st, true
}

func (s *server) cart(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, "/cart")
	if !ok {
		return
	}
	cart, st, ok := s.loadCart(w, r, q, "/cart")
	if !ok {
		return
	}
	st.Title = "Your cart"
	p := cartPage{Cart: cart}
	if id := r.URL.Query().Get("added"); id != "" {
		for _, it := range cart.Items {
			if it.ArticleID == id {
				p.Added = it.Name
			}
		}
	}
	s.pages.render(w, http.StatusOK, "cart", st, p, noCache)
}

// qtyParam reads a posted quantity within [lo, maxQty]; def when absent.
func qtyParam(r *http.Request, def, lo int) (int, bool) {
	v := r.PostForm.Get("qty")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > maxQty {
		return 0, false
	}
	return n, true
}

// cartChange answers a change of the cart: to the cart page when it worked, the
// cart page with the error when the cart service refused it, the sign-in form
// when the token was refused.
func (s *server) cartChange(w http.ResponseWriter, r *http.Request, q req, err error, next string) {
	switch status := statusOf(err); {
	case err == nil:
		http.Redirect(w, r, next, http.StatusSeeOther)
	case status == http.StatusUnauthorized:
		clearSession(w, r)
		toSignin(w, r, "/cart")
	case status >= 400 && status < 500:
		cart, st, ok := s.loadCart(w, r, q, "/cart")
		if !ok {
			return
		}
		msg := "The cart could not be changed."
		var ae *apiError
		if errors.As(err, &ae) && ae.Msg != "" {
			msg += " " + capitalize(ae.Msg) + "."
		}
		st.Title = "Your cart"
		s.pages.render(w, status, "cart", st, cartPage{Cart: cart, Error: msg}, noCache)
	default:
		st := s.newSite(w, r, q.sess, "")
		s.upstreamFail(w, r, st, "cart", err)
	}
}

func (s *server) addToCart(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	id := r.PostForm.Get("article_id")
	if id == "" {
		http.Error(w, "article_id missing", http.StatusBadRequest)
		return
	}
	q, ok := s.signedIn(w, r, "/articles/"+url.PathEscape(id))
	if !ok {
		return
	}
	qty, ok := qtyParam(r, 1, 1)
	if !ok {
		http.Error(w, "qty must be a number from 1 to 99", http.StatusBadRequest)
		return
	}
	err := withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) error {
		_, err := s.gw.addToCart(ctx, q.who, id, qty)
		return err
	})
	s.cartChange(w, r, q, err, "/cart?added="+url.QueryEscape(id))
}

func (s *server) updateItem(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	q, ok := s.signedIn(w, r, "/cart")
	if !ok {
		return
	}
	qty, ok := qtyParam(r, 1, 0)
	if !ok {
		http.Error(w, "qty must be a number from 0 to 99", http.StatusBadRequest)
		return
	}
	s.setQty(w, r, q, r.PathValue("id"), qty)
}

func (s *server) removeItem(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, "/cart")
	if !ok {
		return
	}
	s.setQty(w, r, q, r.PathValue("id"), 0)
}

func (s *server) setQty(w http.ResponseWriter, r *http.Request, q req, id string, qty int) {
	err := withTimeout(r.Context(), s.cfg.APITimeout, func(ctx context.Context) error {
		_, err := s.gw.setQty(ctx, q.who, id, qty)
		return err
	})
	s.cartChange(w, r, q, err, "/cart")
}

// checkoutPage is the data of the checkout page.
type checkoutPage struct {
	Cart      Cart
	Error     string // #checkout-error
	ErrorKind string // its class: out-of-stock, declined, empty-cart, unavailable
	ArticleID string // the article out of stock
}

func (s *server) checkoutPage(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, "/checkout")
	if !ok {
		return
	}
	cart, st, ok := s.loadCart(w, r, q, "/checkout")
	if !ok {
		return
	}
	st.Title = "Checkout"
	s.pages.render(w, http.StatusOK, "checkout", st, checkoutPage{Cart: cart}, noCache)
}

func (s *server) checkout(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, "/checkout")
	if !ok {
		return
	}
	var order Order
	err := withTimeout(r.Context(), s.cfg.CheckoutTimeout, func(ctx context.Context) (err error) {
		order, err = s.gw.checkout(ctx, q.who)
		return err
	})
	if err == nil {
		http.Redirect(w, r, "/orders/"+url.PathEscape(order.ID)+"?placed=1", http.StatusSeeOther)
		return
	}
	status := statusOf(err)
	if status == http.StatusUnauthorized {
		clearSession(w, r)
		toSignin(w, r, "/checkout")
		return
	}
	// The order was not placed: the checkout page again, with the reason.
	cart, st, ok := s.loadCart(w, r, q, "/checkout")
	if !ok {
		return
	}
	st.Title = "Checkout"
	p := checkoutPage{Cart: cart}
	var ae *apiError
	errors.As(err, &ae)
	switch status {
	case http.StatusConflict:
		p.ErrorKind = "out-of-stock"
		name := "An article in your cart"
		if ae != nil {
			p.ArticleID = ae.ArticleID
			for _, it := range cart.Items {
				if it.ArticleID == ae.ArticleID {
					name = "“" + it.Name + "”"
				}
			}
		}
		p.Error = name + " is out of stock. Please lower the quantity or remove it, then try again."
	case http.StatusPaymentRequired:
		p.ErrorKind = "declined"
		p.Error = "Your payment was declined. Nothing was charged and your cart is unchanged."
	case http.StatusBadRequest:
		p.ErrorKind = "empty-cart"
		p.Error = "Your cart is empty."
	default:
		s.log.WarnContext(r.Context(), "checkout failed", "error", err)
		p.ErrorKind = "unavailable"
		p.Error = "The checkout is not possible right now. Nothing was charged; please try again in a moment."
		status = http.StatusServiceUnavailable
	}
	s.pages.render(w, status, "checkout", st, p, noCache)
}

// ordersPage is the data of the order list.
type ordersPage struct {
	Orders []Order
}

func (s *server) orderList(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, "/orders")
	if !ok {
		return
	}
	ctx := r.Context()
	cart := s.startCart(ctx, q)
	var list []Order
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		list, err = s.gw.orders(ctx, q.who)
		return err
	})
	st := s.newSite(w, r, q.sess, "Your orders")
	s.finish(w, r, st, cart)
	if s.sessionEnded(w, r, st, err, "/orders") {
		return
	}
	if err != nil {
		s.upstreamFail(w, r, st, "order list", err)
		return
	}
	s.pages.render(w, http.StatusOK, "orders", st, ordersPage{Orders: list}, noCache)
}

// orderPage is the data of an order's page.
type orderPage struct {
	Order  Order
	Placed bool // just placed: #order-confirmation
}

func (s *server) order(w http.ResponseWriter, r *http.Request) {
	q, ok := s.signedIn(w, r, r.URL.RequestURI())
	if !ok {
		return
	}
	ctx := r.Context()
	cart := s.startCart(ctx, q)
	var o Order
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		o, err = s.gw.order(ctx, q.who, r.PathValue("id"))
		return err
	})
	st := s.newSite(w, r, q.sess, "")
	s.finish(w, r, st, cart)
	if s.sessionEnded(w, r, st, err, r.URL.RequestURI()) {
		return
	}
	if err != nil {
		s.upstreamFail(w, r, st, "order", err)
		return
	}
	st.Title = "Order " + o.ID
	s.pages.render(w, http.StatusOK, "order", st, orderPage{Order: o, Placed: r.URL.Query().Get("placed") != ""}, noCache)
}

// sessionEnded sends the shopper to the sign-in form when the gateway refused the
// token (for the page's call or the cart count).
func (s *server) sessionEnded(w http.ResponseWriter, r *http.Request, st *site, err error, next string) bool {
	if st.User != nil && statusOf(err) != http.StatusUnauthorized {
		return false
	}
	clearSession(w, r)
	toSignin(w, r, next)
	return true
}
