"""The MetaTrader5 surface: constants with the package's values, result types with its fields and dtypes."""

from __future__ import annotations

import aitrading.mt5 as mt5
from aitrading.mt5 import constants


def test_timeframes_have_the_package_values() -> None:
    assert (mt5.TIMEFRAME_M1, mt5.TIMEFRAME_M5, mt5.TIMEFRAME_M15, mt5.TIMEFRAME_M30) == (1, 5, 15, 30)
    assert (mt5.TIMEFRAME_H1, mt5.TIMEFRAME_H4, mt5.TIMEFRAME_H12) == (16385, 16388, 16396)
    assert (mt5.TIMEFRAME_D1, mt5.TIMEFRAME_W1, mt5.TIMEFRAME_MN1) == (16408, 32769, 49153)


def test_trade_retcodes_have_the_package_values() -> None:
    assert mt5.TRADE_RETCODE_REQUOTE == 10004
    assert mt5.TRADE_RETCODE_REJECT == 10006
    assert mt5.TRADE_RETCODE_PLACED == 10008
    assert mt5.TRADE_RETCODE_DONE == 10009
    assert mt5.TRADE_RETCODE_DONE_PARTIAL == 10010
    assert mt5.TRADE_RETCODE_INVALID_VOLUME == 10014
    assert mt5.TRADE_RETCODE_INVALID_STOPS == 10016
    assert mt5.TRADE_RETCODE_MARKET_CLOSED == 10018
    assert mt5.TRADE_RETCODE_NO_MONEY == 10019
    assert mt5.TRADE_RETCODE_PRICE_OFF == 10021
    assert mt5.TRADE_RETCODE_FROZEN == 10029
    assert mt5.TRADE_RETCODE_INVALID_FILL == 10030
    assert mt5.TRADE_RETCODE_INVALID_CLOSE_VOLUME == 10038
    assert mt5.TRADE_RETCODE_HEDGE_PROHIBITED == 10046


def test_trade_request_constants_have_the_package_values() -> None:
    assert (mt5.TRADE_ACTION_DEAL, mt5.TRADE_ACTION_PENDING, mt5.TRADE_ACTION_SLTP) == (1, 5, 6)
    assert (mt5.TRADE_ACTION_MODIFY, mt5.TRADE_ACTION_REMOVE, mt5.TRADE_ACTION_CLOSE_BY) == (7, 8, 10)
    assert (mt5.ORDER_TYPE_BUY, mt5.ORDER_TYPE_SELL, mt5.ORDER_TYPE_SELL_STOP_LIMIT) == (0, 1, 7)
    assert mt5.ORDER_TYPE_CLOSE_BY == 8
    assert (mt5.ORDER_FILLING_FOK, mt5.ORDER_FILLING_IOC, mt5.ORDER_FILLING_RETURN) == (0, 1, 2)
    assert (mt5.ORDER_TIME_GTC, mt5.ORDER_TIME_SPECIFIED_DAY) == (0, 3)
    assert (mt5.ORDER_STATE_PLACED, mt5.ORDER_STATE_FILLED, mt5.ORDER_STATE_REQUEST_CANCEL) == (1, 4, 9)
    assert (mt5.POSITION_TYPE_BUY, mt5.POSITION_TYPE_SELL) == (0, 1)
    assert (mt5.DEAL_TYPE_BALANCE, mt5.DEAL_TYPE_COMMISSION, mt5.DEAL_TAX) == (2, 7, 17)
    assert (mt5.DEAL_ENTRY_IN, mt5.DEAL_ENTRY_OUT, mt5.DEAL_ENTRY_INOUT, mt5.DEAL_ENTRY_OUT_BY) == (
        0,
        1,
        2,
        3,
    )


def test_tick_and_account_constants_have_the_package_values() -> None:
    assert (mt5.COPY_TICKS_ALL, mt5.COPY_TICKS_INFO, mt5.COPY_TICKS_TRADE) == (-1, 1, 2)
    flags = (mt5.TICK_FLAG_BID, mt5.TICK_FLAG_ASK, mt5.TICK_FLAG_LAST, mt5.TICK_FLAG_VOLUME)
    assert flags == (2, 4, 8, 16)
    assert (mt5.TICK_FLAG_BUY, mt5.TICK_FLAG_SELL) == (32, 64)
    assert mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING == 0
    assert mt5.ACCOUNT_MARGIN_MODE_EXCHANGE == 1
    assert mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING == 2
    assert (mt5.ACCOUNT_TRADE_MODE_DEMO, mt5.ACCOUNT_TRADE_MODE_REAL) == (0, 2)
    assert (mt5.SYMBOL_TRADE_MODE_DISABLED, mt5.SYMBOL_TRADE_MODE_FULL) == (0, 4)
    assert (mt5.SYMBOL_CALC_MODE_FOREX, mt5.SYMBOL_CALC_MODE_CFDLEVERAGE) == (0, 4)
    assert mt5.SYMBOL_CALC_MODE_EXCH_STOCKS == 32


def test_last_error_codes_have_the_package_values() -> None:
    assert mt5.RES_S_OK == 1
    assert (mt5.RES_E_FAIL, mt5.RES_E_INVALID_PARAMS, mt5.RES_E_NOT_FOUND, mt5.RES_E_UNSUPPORTED) == (
        -1,
        -2,
        -4,
        -7,
    )
    assert mt5.RES_E_AUTO_TRADING_DISABLED == -8
    assert (mt5.RES_E_INTERNAL_FAIL, mt5.RES_E_INTERNAL_FAIL_CONNECT) == (-10000, -10004)


def test_every_constant_is_an_int_exported_under_its_name() -> None:
    names = constants.__all__
    assert len(names) == len(set(names))
    for name in names:
        value = getattr(constants, name)
        assert type(value) is int, name
        assert getattr(mt5, name) == value
    retcodes = {getattr(constants, n) for n in names if n.startswith("TRADE_RETCODE_")}
    assert len(retcodes) == len([n for n in names if n.startswith("TRADE_RETCODE_")])


def test_result_types_have_the_package_field_order() -> None:
    assert mt5.Tick._fields == ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
    assert mt5.TradeRequest._fields == (
        "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation",
        "type", "type_filling", "type_time", "expiration", "comment", "position", "position_by",
    )  # fmt: skip
    assert mt5.OrderSendResult._fields == (
        "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id",
        "retcode_external", "request",
    )  # fmt: skip
    assert mt5.OrderCheckResult._fields == (
        "retcode", "balance", "equity", "profit", "margin", "margin_free", "margin_level", "comment",
        "request",
    )  # fmt: skip
    assert mt5.TradePosition._fields == (
        "ticket", "time", "time_msc", "time_update", "time_update_msc", "type", "magic", "identifier",
        "reason", "volume", "price_open", "sl", "tp", "price_current", "swap", "profit", "symbol", "comment",
        "external_id",
    )  # fmt: skip
    assert mt5.TradeOrder._fields == (
        "ticket", "time_setup", "time_setup_msc", "time_done", "time_done_msc", "time_expiration", "type",
        "type_time", "type_filling", "state", "magic", "position_id", "position_by_id", "reason",
        "volume_initial", "volume_current", "price_open", "sl", "tp", "price_current", "price_stoplimit",
        "symbol", "comment", "external_id",
    )  # fmt: skip
    assert mt5.TradeDeal._fields == (
        "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason", "volume",
        "price", "commission", "swap", "profit", "fee", "symbol", "comment", "external_id",
    )  # fmt: skip


def test_info_types_have_the_package_field_order() -> None:
    account = mt5.AccountInfo._fields
    assert account[:10] == (
        "login", "trade_mode", "leverage", "limit_orders", "margin_so_mode", "trade_allowed", "trade_expert",
        "margin_mode", "currency_digits", "fifo_close",
    )  # fmt: skip
    assert account[-4:] == ("name", "server", "currency", "company")
    assert len(account) == 28
    terminal = mt5.TerminalInfo._fields
    assert terminal[:3] == ("community_account", "community_connection", "connected")
    assert terminal[-3:] == ("path", "data_path", "commondata_path")
    assert len(terminal) == 22
    symbol = mt5.SymbolInfo._fields
    assert len(symbol) == 96
    assert symbol[:5] == ("custom", "chart_mode", "select", "visible", "session_deals")
    assert symbol[11:13] == ("digits", "spread")
    assert symbol[31:37] == ("bid", "bidhigh", "bidlow", "ask", "askhigh", "asklow")
    assert symbol[44:50] == (
        "point", "trade_tick_value", "trade_tick_value_profit", "trade_tick_value_loss", "trade_tick_size",
        "trade_contract_size",
    )  # fmt: skip
    assert symbol[-5:] == ("formula", "isin", "name", "page", "path")
    assert symbol[-13:-8] == ("basis", "category", "currency_base", "currency_profit", "currency_margin")


def test_copy_results_have_the_package_dtypes() -> None:
    ticks = [
        ("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
        ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8"),
    ]  # fmt: skip
    rates = [
        ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
        ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8"),
    ]  # fmt: skip
    assert mt5.TICK_DTYPE.descr == ticks
    assert mt5.RATE_DTYPE.descr == rates
